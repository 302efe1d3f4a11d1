from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from iscore.models.step import StepParameter
from iscore.runtime.child_jobs import EXECUTE_TARGET, StepInspectionError, inspect_in_sandbox
from iscore.runtime.invocation import StepInvocation
from iscore.runtime.limits import (
    ChildLimits,
    SoftTimeLimitExceeded,
    child_environment,
    describe_bytes,
    describe_error,
    group_members,
)
from iscore.runtime.pool import (
    ChildPool,
    ChildPoolClosedError,
    ChildStartError,
)
from iscore.runtime.wire import invocation_to_wire, outcome_from_wire
from structlog.testing import capture_logs

# The targets module is a sibling; its dotted name depends on whether pytest
# imported this file as part of the ``tests`` package or from its folder.
TARGETS = f"{__name__.rpartition('.')[0]}.pool_targets".lstrip(".")

MiB = 1024 * 1024


def target(name: str) -> str:
    return f"{TARGETS}:{name}"


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[ChildPool]:
    async with ChildPool(size=2, preload=(TARGETS,), workdir=tmp_path / "children") as started:
        yield started


async def run(pool: ChildPool, name: str, payload: bytes = b"", **options: Any) -> Any:
    options.setdefault("time_limit_s", 10.0)
    options.setdefault("grace_s", 0.3)
    return await pool.run(target(name), payload, **options)


async def assert_pool_still_serves(pool: ChildPool) -> None:
    result = await run(pool, "echo", b"still here")

    assert (result.status, result.output) == ("ok", b"still here")


async def test_pool_children_are_warm_before_the_first_job(pool: ChildPool) -> None:
    warm_pids = pool.pids
    submitted_at = time.time()

    result = await run(pool, "describe")

    facts = json.loads(result.output)
    assert len(warm_pids) == 2
    assert facts["pid"] in warm_pids
    assert facts["imported_at"] < submitted_at


async def test_pool_runs_as_many_jobs_at_once_as_its_size(pool: ChildPool, tmp_path: Path) -> None:
    folder = tmp_path / "rendezvous"
    folder.mkdir()
    payload = json.dumps({"folder": str(folder), "count": 2}).encode()

    results = await asyncio.gather(
        run(pool, "rendezvous", payload), run(pool, "rendezvous", payload)
    )

    assert [result.output for result in results] == [b"met", b"met"]
    assert results[0].pid != results[1].pid


async def test_pool_queues_jobs_beyond_its_size(pool: ChildPool) -> None:
    results = await asyncio.gather(*(run(pool, "echo", str(n).encode()) for n in range(5)))

    assert [result.output for result in results] == [str(n).encode() for n in range(5)]


async def test_child_environment_holds_no_service_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IS_ADMIN_PASSWORD", "hunter2")
    monkeypatch.setenv("NATS_URL", "nats://user:secret@localhost:4222")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("SOME_VENDOR_TOKEN", "token-value")

    async with ChildPool(size=1, preload=(TARGETS,), workdir=tmp_path) as pool:
        result = await run(pool, "describe")

    env = json.loads(result.output)["env"]
    assert not {"IS_ADMIN_PASSWORD", "NATS_URL", "AWS_SECRET_ACCESS_KEY"} & env.keys()
    assert "SOME_VENDOR_TOKEN" not in env
    assert "secret" not in json.dumps(env)
    assert env["HOME"] == str(tmp_path)
    assert env["TMPDIR"] == str(tmp_path / "tmp")


def test_child_environment_is_built_from_a_whitelist(tmp_path: Path) -> None:
    parent = {"PATH": "/bin", "LANG": "de_DE.UTF-8", "IS_NATS_URL": "nats://x", "TOKEN": "t"}

    env = child_environment(
        home=tmp_path, import_paths=["/src"], extra={"HTTPS_PROXY": "p"}, parent=parent
    )

    assert env == {
        "PATH": "/bin",
        "LANG": "de_DE.UTF-8",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": "/src",
        "HTTPS_PROXY": "p",
    }


async def test_print_in_step_code_does_not_corrupt_the_frames(pool: ChildPool) -> None:
    result = await run(pool, "print_and_return")

    assert (result.status, result.output) == ("ok", b"clean")


async def test_log_records_stream_to_the_parent_in_order(pool: ChildPool) -> None:
    records: list[dict[str, Any]] = []

    result = await run(pool, "log_lines", b"50", on_log=records.append)

    assert result.output == b"logged"
    assert [record["message"] for record in records] == [f"line {n}" for n in range(50)]


async def test_log_records_arrive_while_the_job_runs(pool: ChildPool, tmp_path: Path) -> None:
    marker = tmp_path / "acknowledged"

    result = await run(
        pool, "log_then_wait_for_ack", str(marker).encode(), on_log=lambda _: marker.touch()
    )

    assert result.output == b"acknowledged"


async def test_soft_time_limit_is_catchable_in_step_code(pool: ChildPool) -> None:
    result = await run(pool, "wait_for_soft_limit", time_limit_s=0.2, grace_s=5.0)

    assert (result.status, result.output) == ("ok", b"caught soft limit")
    assert result.duration_ms < 4000


async def test_child_ignoring_soft_limit_is_killed_after_grace(pool: ChildPool) -> None:
    with capture_logs() as logs:
        result = await run(pool, "ignore_soft_limit", time_limit_s=0.2, grace_s=0.2)

    assert result.status == "timed_out"
    assert result.detail == "time limit exceeded (0.2 s)"
    assert result.signal == "SIGKILL"
    assert not is_running(result.pid)
    assert "child_timed_out" in [entry["event"] for entry in logs]
    await assert_pool_still_serves(pool)


async def test_uncaught_soft_limit_is_an_error_result(pool: ChildPool) -> None:
    result = await run(pool, "log_then_wait_for_ack", b"/nonexistent", time_limit_s=0.1)

    assert result.status == "error"
    assert result.error_type == SoftTimeLimitExceeded.__name__
    assert "SoftTimeLimitExceeded" in result.traceback


async def test_exception_in_target_is_an_error_result(pool: ChildPool) -> None:
    result = await run(pool, "raise_value_error")

    assert (result.status, result.detail, result.error_type) == (
        "error",
        "ValueError: bad input",
        "ValueError",
    )
    assert "raise ValueError" in result.traceback
    await assert_pool_still_serves(pool)


async def test_child_exiting_is_a_crash_and_is_replaced(pool: ChildPool) -> None:
    with capture_logs() as logs:
        result = await run(pool, "exit_with_three")

    assert (result.status, result.detail, result.exit_code) == (
        "crashed",
        "child exited with code 3",
        3,
    )
    assert [entry["log_level"] for entry in logs if entry["event"] == "child_crashed"] == [
        "warning"
    ]
    await assert_pool_still_serves(pool)
    assert result.pid not in pool.pids


async def test_segfault_is_a_crash_with_the_signal_name(pool: ChildPool) -> None:
    result = await run(pool, "segfault")

    assert (result.status, result.detail, result.signal) == (
        "crashed",
        "killed by signal SIGSEGV",
        "SIGSEGV",
    )
    assert "Fatal Python error" in result.stderr_tail
    await assert_pool_still_serves(pool)


async def test_allocation_past_the_memory_limit_fails_the_job(tmp_path: Path) -> None:
    limits = ChildLimits(memory_bytes=512 * MiB)

    async with ChildPool(size=1, limits=limits, preload=(TARGETS,), workdir=tmp_path) as pool:
        result = await run(pool, "allocate", str(10 * 1024 * MiB).encode())
        await assert_pool_still_serves(pool)

    assert result.status == "error"
    assert result.detail == "memory limit of 512 MiB exceeded (MemoryError)"


async def test_fork_bomb_is_killed_with_the_whole_process_group(pool: ChildPool) -> None:
    result = await run(pool, "fork_bomb", b"20", time_limit_s=0.3, grace_s=0.2)

    assert result.status == "timed_out"
    assert group_members(result.pid) == set()
    await assert_pool_still_serves(pool)


async def test_processes_left_behind_by_a_job_are_killed(pool: ChildPool) -> None:
    with capture_logs() as logs:
        result = await run(pool, "leave_processes", b"5")

    assert result.status == "ok"
    assert not any(is_running(pid) for pid in json.loads(result.output))
    assert group_members(result.pid) == set()
    strays = [entry for entry in logs if entry["event"] == "child_strays_killed"]
    # Each of the 5 forked processes forks once more, maybe after the job ended.
    assert 5 <= strays[0]["process_count"] <= 10


async def test_large_payload_round_trips(pool: ChildPool) -> None:
    payload = os.urandom(64 * MiB)

    result = await run(pool, "echo", payload)

    assert result.output == payload


@pytest.mark.skipif(
    not os.environ.get("IS_TEST_LARGE_PAYLOADS"),
    reason="256 MB round trip takes seconds; set IS_TEST_LARGE_PAYLOADS=1 to run it",
)
async def test_step_data_of_256_mb_round_trips_within_ten_seconds(pool: ChildPool) -> None:
    payload = b"\x01" * (256 * MiB)
    started_at = time.monotonic()

    result = await run(pool, "echo", payload, time_limit_s=None)

    assert result.output == payload
    assert time.monotonic() - started_at < 10


async def test_child_serves_several_jobs_when_tasks_per_child_allows(tmp_path: Path) -> None:
    async with ChildPool(size=1, tasks_per_child=2, preload=(TARGETS,), workdir=tmp_path) as pool:
        pids = [(await run(pool, "echo")).pid for _ in range(3)]
        failed = await run(pool, "raise_value_error")
        after_failure = await run(pool, "echo")

    assert pids[0] == pids[1] != pids[2]
    assert pids[2] == failed.pid != after_failure.pid


async def test_child_that_leaves_processes_is_not_reused_and_its_strays_die(
    tmp_path: Path,
) -> None:
    async with ChildPool(size=1, tasks_per_child=5, preload=(TARGETS,), workdir=tmp_path) as pool:
        with capture_logs() as logs:
            left = await run(pool, "leave_processes", b"3")
        after = await run(pool, "echo")

    assert left.status == "ok"
    assert after.pid != left.pid
    assert not any(is_running(pid) for pid in json.loads(left.output))
    assert [e for e in logs if e["event"] == "child_strays_killed"]


KILLED_WORKER = """
import asyncio, sys
from pathlib import Path
from iscore.runtime.pool import ChildPool

async def main():
    async with ChildPool(size=1, preload=(sys.argv[1],), workdir=Path(sys.argv[2])) as pool:
        def on_log(record):
            print("PIDS", record["message"], flush=True)
        await pool.run(sys.argv[1] + ":report_pids_then_sleep", b"", time_limit_s=60,
                       on_log=on_log)

asyncio.run(main())
"""


async def test_steps_die_with_a_killed_worker_process(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_WORKER, TARGETS, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, cwd=repo,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(Path(__file__).parent)])},
    )
    assert worker.stdout is not None
    line = b""
    while not line.startswith(b"PIDS "):  # the pool logs on stdout too
        line = await asyncio.wait_for(worker.stdout.readline(), 30)
        assert line, "the worker script ended before its step reported"
    child, sleeper = json.loads(line.removeprefix(b"PIDS "))
    assert is_running(child) and is_running(sleeper)

    worker.kill()
    await worker.wait()

    # Nothing of the step may run on unsupervised: the child and its group.
    deadline = time.monotonic() + 10
    while (is_running(child) or group_members(child)) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not is_running(child)
    assert not is_running(sleeper)
    assert group_members(child) == set()


async def test_pool_serves_on_after_its_fork_server_is_killed(pool: ChildPool) -> None:
    await assert_pool_still_serves(pool)
    # Reached through the pool's private parts: there is no public handle on
    # the fork server, and no other way to kill it like the OOM killer would.
    server = pool._forks._process  # type: ignore[union-attr]
    assert server is not None

    os.kill(server.pid, signal.SIGKILL)
    await server.wait()

    results = [await run(pool, "echo", b"again") for _ in range(3)]
    assert [r.status for r in results] == ["ok", "ok", "ok"]


async def start_waiting_job(pool: ChildPool) -> asyncio.Future[Any]:
    """Start a job that keeps its child busy; return once the child runs it."""
    running = asyncio.Event()
    job = asyncio.ensure_future(
        run(pool, "log_then_wait_for_ack", b"/nonexistent", on_log=lambda _: running.set())
    )
    await running.wait()
    return job


async def test_cancelled_job_kills_its_child(pool: ChildPool) -> None:
    busy_pids = pool.pids
    job = await start_waiting_job(pool)

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job

    assert len(busy_pids - pool.pids) == 1
    assert not any(is_running(pid) for pid in busy_pids - pool.pids)
    await assert_pool_still_serves(pool)


async def test_close_leaves_no_child_processes(tmp_path: Path) -> None:
    pool = ChildPool(size=2, preload=(TARGETS,), workdir=tmp_path)
    await pool.start()
    pids = pool.pids
    running = await start_waiting_job(pool)

    await pool.close()
    result = await running

    assert len(pids) == 2
    assert not any(is_running(pid) for pid in pids)
    assert result.status == "crashed"


async def test_run_before_start_is_refused() -> None:
    pool = ChildPool(size=1, preload=(TARGETS,))

    with pytest.raises(ChildPoolClosedError):
        await run(pool, "echo")


async def test_child_that_cannot_preload_fails_the_start(tmp_path: Path) -> None:
    pool = ChildPool(size=1, preload=("no_such_module_for_pool_tests",), workdir=tmp_path)

    with pytest.raises(ChildStartError, match="No module named 'no_such_module_for_pool_tests'"):
        await pool.start()


def test_child_limits_refuse_non_positive_values() -> None:
    with pytest.raises(ValueError, match="open_files"):
        ChildLimits(open_files=0)


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [(2 * 1024**3, "2 GiB"), (512 * MiB, "512 MiB"), (1536 * MiB, "1.5 GiB"), (12, "12 bytes")],
)
def test_describe_bytes_uses_binary_units(size_bytes: int, text: str) -> None:
    assert describe_bytes(size_bytes) == text


FETCH = textwrap.dedent(
    """\
    import time

    from ipaascore.BaseStep import BaseStep


    class Fetch(BaseStep):
        def __init__(self):
            self.friendly_name = "Fetch devices"
            self.version = "1.2"
            self.new_step_parameter(name="host", required=True, description="Device host")

        def execute(self):
            host = self.get_parameter("host")
            self.logger.info("fetching from %s", host)
            if host == "slow":
                time.sleep(30)
            self.save_data_for_next_step({"host": host, "pid_is_child": True})
    """
)


@pytest.fixture
async def runtime_pool(tmp_path: Path) -> AsyncIterator[ChildPool]:
    async with ChildPool(size=1, workdir=tmp_path) as started:
        yield started


def fetch_invocation(host: str) -> bytes:
    entry = {"name": "fetch", "file": "Fetch", "host": host}
    return invocation_to_wire(StepInvocation(source=FETCH, file="Fetch", entry=entry))


async def test_step_runs_in_a_child_through_the_execute_target(runtime_pool: ChildPool) -> None:
    records: list[dict[str, Any]] = []

    result = await runtime_pool.run(
        EXECUTE_TARGET, fetch_invocation("db1"), time_limit_s=10.0, on_log=records.append
    )

    outcome = outcome_from_wire(result.output or b"")
    assert outcome.error_type is None
    assert outcome.data == {"host": "db1", "pid_is_child": True}
    assert [record["message"] for record in records] == ["fetching from db1"]


async def test_soft_time_limit_fails_the_step_not_the_child(runtime_pool: ChildPool) -> None:
    result = await runtime_pool.run(
        EXECUTE_TARGET, fetch_invocation("slow"), time_limit_s=0.2, grace_s=5.0
    )

    outcome = outcome_from_wire(result.output or b"")
    assert result.status == "ok"
    assert outcome.error_type == "SoftTimeLimitExceeded"
    assert 'File "Fetch.py", line 16, in execute' in (outcome.traceback or "")


async def test_inspect_in_sandbox_reads_step_metadata_in_a_one_off_child() -> None:
    metadata = await inspect_in_sandbox(None, FETCH, "Fetch")

    assert (metadata.file, metadata.friendly_name, metadata.version) == (
        "Fetch",
        "Fetch devices",
        "1.2",
    )
    assert metadata.parameter("host") == StepParameter(
        name="host", description="Device host", sample_value="", required=True
    )


async def test_inspect_in_sandbox_reports_the_failing_line_of_init(
    runtime_pool: ChildPool,
) -> None:
    source = FETCH.replace('self.version = "1.2"', "self.version = 1 / 0")

    with pytest.raises(StepInspectionError) as caught:
        await inspect_in_sandbox(runtime_pool, source, "Fetch")

    assert (caught.value.line, caught.value.error_type) == (9, "ZeroDivisionError")
    assert "line 9" in str(caught.value)


async def test_inspect_in_sandbox_reports_invalid_source(runtime_pool: ChildPool) -> None:
    source = FETCH.replace("def execute(self):", "def execute(self)")

    with pytest.raises(StepInspectionError) as caught:
        await inspect_in_sandbox(runtime_pool, source, "Fetch")

    assert (caught.value.line, caught.value.error_type) == (12, "StepSourceError")


async def test_inspect_in_sandbox_fails_for_an_init_that_never_returns(
    runtime_pool: ChildPool,
) -> None:
    source = FETCH.replace('self.version = "1.2"', "while True: pass")

    with pytest.raises(
        StepInspectionError, match="line 9 while its metadata was read: SoftTimeLimitExceeded"
    ):
        await inspect_in_sandbox(runtime_pool, source, "Fetch", time_limit_s=0.2)


def test_child_errors_are_never_empty_and_name_the_memory_limit() -> None:
    no_memory_limit = ChildLimits(memory_bytes=None)

    assert describe_error("ValueError", "bad input", ChildLimits()) == "ValueError: bad input"
    assert describe_error("StopIteration", "", ChildLimits()) == "StopIteration"
    assert describe_error("MemoryError", "", no_memory_limit) == "MemoryError"
    assert describe_error("MemoryError", "", ChildLimits(memory_bytes=256 * MiB)) == (
        "memory limit of 256 MiB exceeded (MemoryError)"
    )
