"""Execution semantics: retries, time limits, queues, isolation, revoke, replay."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from iscore.settings import Settings, SettingsError
from tests.integration.conftest import System
from tests.integration.test_faults import GATED, NOOP, gated_application

# Fails until it has been attempted more than ``fail_times`` times; logs the
# wall-clock start of every attempt so tests can check the retry waits.
FLAKY = """
import time

from ipaascore.BaseStep import BaseStep


class Flaky(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="log", required=True)
        self.new_step_parameter(name="fail_times", default_value=2)

    def execute(self):
        path = self.get_parameter("log")
        with open(path, "a") as sink:
            sink.write(repr(time.time()) + "\\n")
        with open(path) as source:
            count = len(source.read().split())
        if count <= int(self.get_parameter("fail_times")):
            raise RuntimeError("attempt %d fails" % count)
        self.save_data_for_next_step(count)
"""

SLEEPER = """
import time

from ipaascore.BaseStep import BaseStep


class Sleeper(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        time.sleep(60)
"""

STUBBORN = """
import time

from ipaascore.BaseStep import BaseStep


class Stubborn(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                time.sleep(60)
            except BaseException:
                pass
"""

CRASHER = """
import os

from ipaascore.BaseStep import BaseStep


class Crasher(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        os._exit(3)
"""

SNOOP = """
import os

from ipaascore.BaseStep import BaseStep


class Snoop(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        self.save_data_for_next_step(sorted(os.environ))
"""

VERSIONED = """
from ipaascore.BaseStep import BaseStep


class Versioned(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        self.save_data_for_next_step("{label}")
"""


def attempt_times(log: Path) -> list[float]:
    return [float(line) for line in log.read_text().split()]


async def test_backoff_retries_wait_one_then_two_seconds_and_then_succeed(
    module_system: System, tmp_path: Path
) -> None:
    module_system.upload_step("Flaky", FLAKY)
    log = tmp_path / "attempts"
    module_system.upload_application({
        "name": "retry_backoff",
        "steps": [{"name": "flaky", "file": "Flaky", "log": str(log), "fail_times": 2,
                   "retry_max": 3, "retry_backoff": True}],
    })

    doc = await module_system.wait_for(module_system.run("retry_backoff")["id"])

    assert doc["state"] == "SUCCESS", doc
    first, second, third = attempt_times(log)
    assert 1.0 <= second - first <= 2.5
    assert 2.0 <= third - second <= 3.5
    task = module_system.get(f"/tasks/{doc['steps'][0]['id']}")
    assert task["attempt"] == 3
    assert task["result"]["data"] == 3


async def test_waiting_retry_shows_state_attempt_and_next_attempt_time(
    module_system: System, tmp_path: Path
) -> None:
    module_system.upload_step("Flaky", FLAKY)
    log = tmp_path / "attempts"
    module_system.upload_application({
        "name": "retry_countdown",
        "steps": [{"name": "flaky", "file": "Flaky", "log": str(log), "fail_times": 1,
                   "retry_max": 1, "retry_countdown": 3}],
    })

    run_id = module_system.run("retry_countdown")["id"]
    waiting = await module_system.wait_for(run_id, step_state="RETRY")
    task = module_system.get(f"/tasks/{waiting['steps'][0]['id']}")
    doc = await module_system.wait_for(run_id)

    assert task["state"] == "RETRY"
    assert task["attempt"] == 2
    assert "attempt 1 fails" in task["traceback"]
    assert task["next_attempt_time"] >= int(time.time()) - 1
    assert doc["state"] == "SUCCESS"
    first, second = attempt_times(log)
    assert 3.0 <= second - first <= 4.5


async def test_retries_exhausted_fail_the_step_after_retry_max_retries(
    module_system: System, tmp_path: Path
) -> None:
    module_system.upload_step("Flaky", FLAKY)
    log = tmp_path / "attempts"
    module_system.upload_application({
        "name": "retry_exhausted",
        "steps": [{"name": "flaky", "file": "Flaky", "log": str(log), "fail_times": 9,
                   "retry_max": 2, "retry_countdown": 0}],
    })

    doc = await module_system.wait_for(module_system.run("retry_exhausted")["id"])

    assert doc["state"] == "FAILURE"
    assert len(attempt_times(log)) == 3
    assert "attempt 3 fails" in doc["steps"][0]["traceback"]


async def test_pending_retry_survives_a_restart_of_every_service(
    system_factory: Any, tmp_path: Path
) -> None:
    system = system_factory(ack_wait_s=3.0)
    system.start_all()
    system.upload_step("Flaky", FLAKY)
    log = tmp_path / "attempts"
    system.upload_application({
        "name": "retry_restart",
        "steps": [{"name": "flaky", "file": "Flaky", "log": str(log), "fail_times": 1,
                   "retry_max": 1, "retry_countdown": 4}],
    })
    run_id = system.run("retry_restart")["id"]
    await system.wait_for(run_id, step_state="RETRY")

    system.stop_all()
    system.start_all()
    doc = await system.wait_for(run_id, timeout_s=60)

    assert doc["state"] == "SUCCESS", doc
    first, second = attempt_times(log)
    assert second - first >= 4.0


async def test_soft_time_limit_fails_the_step_naming_the_limit(module_system: System) -> None:
    module_system.upload_step("Sleeper", SLEEPER)
    module_system.upload_application({
        "name": "too_slow", "steps": [{"name": "sleep", "file": "Sleeper", "time_limit": 1}]})

    doc = await module_system.wait_for(module_system.run("too_slow")["id"])

    step = doc["steps"][0]
    assert doc["state"] == "FAILURE"
    assert "SoftTimeLimitExceeded" in step["traceback"]
    assert "time limit exceeded (1 s)" in step["traceback"]


async def test_step_ignoring_its_time_limit_is_killed_and_the_slot_freed(
    system_factory: Any,
) -> None:
    system = system_factory()
    system.extra_env["IS_TIME_LIMIT_GRACE"] = "1"
    system.start_all()
    system.upload_step("Stubborn", STUBBORN)
    system.upload_step("Noop", NOOP)
    system.upload_application({"name": "stubborn", "steps": [
        {"name": "a", "file": "Stubborn", "time_limit": 1},
        {"name": "b", "file": "Stubborn", "time_limit": 1},
    ]})
    system.upload_application({"name": "after", "steps": [{"name": "n", "file": "Noop"}]})

    doc = await system.wait_for(system.run("stubborn")["id"])
    after = await system.wait_for(system.run("after")["id"])

    assert doc["state"] == "FAILURE"
    assert all(s["error"] == "time limit exceeded (1 s)" for s in doc["steps"]), doc
    assert after["state"] == "SUCCESS"


async def test_run_on_a_queue_nobody_serves_waits_until_a_worker_serves_it(
    module_system: System,
) -> None:
    module_system.upload_step("Noop", NOOP)
    module_system.upload_application({"name": "queued", "queue": "reports",
                                      "steps": [{"name": "n", "file": "Noop"}]})

    doc = module_system.run("queued", wait=1)
    module_system.start("worker-reports", "is-stepworker", user_queues="reports",
                        IS_WORKER_NAME="worker-reports")
    final = await module_system.wait_for(doc["id"])

    assert doc["state"] == "STARTED"
    assert doc["queue"] == "reports"
    assert doc["steps"][0]["queue"] == "reports"
    assert final["state"] == "SUCCESS"
    assert module_system.get(f"/tasks/{final['steps'][0]['id']}")["worker"] == "worker-reports"


async def test_run_time_params_queue_overrides_the_application_queue(
    module_system: System,
) -> None:
    module_system.upload_step("Noop", NOOP)
    module_system.upload_application({"name": "requeued", "queue": "nobody_here",
                                      "steps": [{"name": "n", "file": "Noop"}]})

    doc = await module_system.wait_for(
        module_system.run("requeued", params={"queue": "default"})["id"])

    assert doc["state"] == "SUCCESS"
    assert doc["queue"] == "default"


@pytest.mark.parametrize("queue", ["a.b", "all*", "with space", ">"])
def test_invalid_queue_names_are_refused_with_400(module_system: System, queue: str) -> None:
    with module_system.client() as http:
        reply = http.post("/applications", json={
            "name": "bad_queue", "queue": queue, "steps": [{"name": "n", "file": "Noop"}]})

    assert reply.status_code == 400
    assert reply.json()["field"] == "queue"


async def test_crashing_step_fails_alone_and_the_worker_keeps_serving(
    module_system: System,
) -> None:
    module_system.upload_step("Crasher", CRASHER)
    module_system.upload_step("Noop", NOOP)
    module_system.upload_application({"name": "crash", "steps": [
        {"name": "boom", "file": "Crasher"}, {"name": "fine", "file": "Noop"}]})

    doc = await module_system.wait_for(module_system.run("crash")["id"])

    states = {s["name"]: s for s in doc["steps"]}
    assert states["boom"]["state"] == "FAILURE"
    assert "exited with code 3" in states["boom"]["error"]
    assert states["fine"]["state"] == "SUCCESS"
    assert module_system.processes["worker"].poll() is None


PID = """
import os

from ipaascore.BaseStep import BaseStep


class Pid(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        self.save_data_for_next_step(os.getpid())
"""


def pid_chain(name: str, length: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"name": f"p{i}", "file": "Pid", "output_to": [f"p{i + 1}"]} for i in range(length - 1)
    ]
    steps.append({"name": f"p{length - 1}", "file": "Pid"})
    return {"name": name, "steps": steps}


async def step_pids(system: System, application: str) -> list[int]:
    doc = await system.wait_for(system.run(application)["id"])
    assert doc["state"] == "SUCCESS", doc
    return [system.get(f"/tasks/{s['id']}")["result"]["data"] for s in doc["steps"]]


async def test_every_step_attempt_runs_in_a_fresh_process_by_default(
    module_system: System,
) -> None:
    module_system.upload_step("Pid", PID)
    module_system.upload_application(pid_chain("pids_default", 3))

    pids = await step_pids(module_system, "pids_default")

    assert len(set(pids)) == 3, pids


async def test_tasks_per_child_lets_one_process_serve_that_many_attempts(
    system_factory: Any,
) -> None:
    system = system_factory(worker_threads=1)
    system.extra_env["IS_TASKS_PER_CHILD"] = "3"
    system.start_all()
    system.upload_step("Pid", PID)
    system.upload_application(pid_chain("pids_reused", 4))

    pids = await step_pids(system, "pids_reused")

    assert pids[0] == pids[1] == pids[2], pids
    assert pids[3] != pids[0], pids


HOG = """
from ipaascore.BaseStep import BaseStep


class Hog(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="what", required=True)

    def execute(self):
        if self.get_parameter("what") == "memory":
            self.save_data_for_next_step(len(bytearray(512 * 1024 * 1024)))
        while True:  # burn CPU until the kernel says stop
            pass
"""


async def test_step_limits_from_the_environment_fail_the_step_naming_the_limit(
    system_factory: Any,
) -> None:
    system = system_factory()
    system.extra_env.update(IS_STEP_MEMORY_MB="256", IS_STEP_CPU_SECONDS="1")
    system.start_all()
    system.upload_step("Hog", HOG)
    system.upload_application({"name": "hogs", "steps": [
        {"name": "memory", "file": "Hog", "what": "memory"},
        {"name": "cpu", "file": "Hog", "what": "cpu"},
    ]})

    doc = await system.wait_for(system.run("hogs")["id"])

    steps = {s["name"]: system.get(f"/tasks/{s['id']}") for s in doc["steps"]}
    assert steps["memory"]["state"] == "FAILURE"
    assert steps["memory"]["error"] == "memory limit of 256 MiB exceeded (MemoryError)"
    assert steps["cpu"]["state"] == "FAILURE"
    assert steps["cpu"]["error"] == "CPU time limit of 1 s exceeded (SIGXCPU)"


def test_tasks_per_child_below_one_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IS_TASKS_PER_CHILD", "0")

    with pytest.raises(SettingsError, match="IS_TASKS_PER_CHILD='0' must be at least 1"):
        Settings.from_env()


async def test_step_environment_holds_none_of_the_service_secrets(
    module_system: System,
) -> None:
    module_system.upload_step("Snoop", SNOOP)
    module_system.upload_application({"name": "snoop", "steps": [{"name": "s", "file": "Snoop"}]})

    doc = await module_system.wait_for(module_system.run("snoop")["id"])

    names = module_system.get(f"/tasks/{doc['steps'][0]['id']}")["result"]["data"]
    assert not [n for n in names if n.startswith("IS_") or "PASSWORD" in n or "NATS" in n]


async def test_revoking_a_run_kills_the_running_step_and_queued_ones_never_start(
    system_factory: Any, tmp_path: Path
) -> None:
    system = system_factory(ack_wait_s=3.0)
    system.start_all()
    system.upload_step("Gated", GATED)
    system.upload_step("Noop", NOOP)
    system.upload_application(gated_application("revocable"))
    gate = tmp_path / "gate"
    run_id = system.run("revocable", params={"gate": str(gate)})["id"]
    await system.wait_for(run_id, step_state="STARTED")

    started = time.monotonic()
    with system.client() as http:
        revoked = http.post(f"/tasks/{run_id}/revoke").json()
    took = time.monotonic() - started
    system.stop_all()
    gate.with_suffix(".release").touch()
    system.start_all()
    after_restart = system.get(f"/tasks/{run_id}")

    assert revoked["state"] == "REVOKED"
    assert took < 5
    assert [s["state"] for s in revoked["steps"]] == ["REVOKED", "REVOKED"]
    assert revoked["steps"][1].get("attempt") == 0
    assert after_restart["state"] == "REVOKED"
    assert (tmp_path / "gate.attempts").read_text() == "x"


async def test_revoking_one_step_task_stops_its_dependents_only(
    module_system: System, tmp_path: Path
) -> None:
    module_system.upload_step("Gated", GATED)
    module_system.upload_step("Noop", NOOP)
    document = gated_application("revoke_one")
    document["steps"].append({"name": "independent", "file": "Noop"})
    module_system.upload_application(document)
    run_id = module_system.run("revoke_one", params={"gate": str(tmp_path / "g")})["id"]
    doc = await module_system.wait_for(run_id, step_state="STARTED")
    gated_id = next(s["id"] for s in doc["steps"] if s["name"] == "wait here")

    with module_system.client() as http:
        reply = http.post(f"/tasks/{gated_id}/revoke")
    final = await module_system.wait_for(run_id)

    states = {s["name"]: s["state"] for s in final["steps"]}
    assert reply.status_code == 200
    assert reply.json()["state"] == "REVOKED"
    assert states == {"wait here": "REVOKED", "after": "REVOKED", "independent": "SUCCESS"}
    assert final["state"] == "REVOKED"


async def test_delete_tasks_terminates_every_unfinished_run(
    module_system: System, tmp_path: Path
) -> None:
    module_system.upload_step("Gated", GATED)
    module_system.upload_step("Noop", NOOP)
    module_system.upload_application(gated_application("terminate_all"))
    run_ids = [module_system.run("terminate_all", params={"gate": str(tmp_path / f"g{i}")})["id"]
               for i in range(3)]

    with module_system.client() as http:
        reply = http.delete("/tasks")
    finals = [await module_system.wait_for(run_id) for run_id in run_ids]

    assert reply.status_code == 200
    assert set(run_ids) <= set(reply.json()["revoked_run_ids"])
    assert {doc["state"] for doc in finals} == {"REVOKED"}


async def test_replay_reuses_the_original_versions_and_links_the_runs(
    module_system: System,
) -> None:
    module_system.upload_step("Versioned", VERSIONED.replace("{label}", "first"))
    module_system.upload_application({"name": "replayed",
                                      "steps": [{"name": "v", "file": "Versioned"}]})
    original = await module_system.wait_for(module_system.run("replayed")["id"])
    module_system.upload_step("Versioned", VERSIONED.replace("{label}", "second"))
    module_system.upload_application({"name": "replayed", "description": "changed",
                                      "steps": [{"name": "v", "file": "Versioned"}]})

    with module_system.client() as http:
        reply = http.post(f"/tasks/{original['id']}/replay", params={"wait": 20})
    replay = await module_system.wait_for(reply.json()["id"])
    fresh = await module_system.wait_for(module_system.run("replayed")["id"])

    def saved(doc: dict[str, Any]) -> Any:
        return module_system.get(f"/tasks/{doc['steps'][0]['id']}")["result"]["data"]

    assert replay["replay_of"] == original["id"]
    assert replay["application_version"] == original["application_version"]
    assert replay["step_versions"] == original["step_versions"]
    assert saved(replay) == "first"
    assert saved(fresh) == "second"
    assert module_system.get(f"/tasks/{original['id']}") == original


async def test_stalled_worker_resuming_after_redelivery_does_not_yield_a_second_result(
    system_factory: Any, tmp_path: Path
) -> None:
    system = system_factory(ack_wait_s=2.0)
    system.extra_env["IS_SHUTDOWN_GRACE"] = "20"
    system.start_all()
    system.upload_step("Gated", GATED)
    system.upload_step("Noop", NOOP)
    system.upload_application(gated_application("stalled"))
    system.upload_application({"name": "barrier", "steps": [{"name": "n", "file": "Noop"}]})
    gate = tmp_path / "gate"
    run_id = system.run("stalled", params={"gate": str(gate)})["id"]
    await system.wait_for(run_id, step_state="STARTED")

    stalled = system.processes["worker"]
    stalled.send_signal(signal.SIGSTOP)
    system.start("worker2", "is-stepworker", IS_WORKER_NAME="worker-2")
    doc = await system.wait_for(run_id, timeout_s=60)
    gate.with_suffix(".release").touch()
    stalled.send_signal(signal.SIGCONT)
    # Stopping drains: the resumed worker finishes its attempt and publishes
    # the stale result before it exits.
    system.kill("worker", signal.SIGTERM)
    # The planner handles step events in order: once a later run is done,
    # the stale result has been seen.
    await system.wait_for(system.run("barrier")["id"])
    planner_lines = (system.logs / "planner.log").read_text().splitlines()

    assert doc["state"] == "SUCCESS"
    first = system.get(f"/tasks/{doc['steps'][0]['id']}")
    assert first["worker"] == "worker-2"
    assert first["result"]["data"] == {"attempt_count": 2}
    assert doc["steps"][1]["attempt"] == 1
    dispatches = [line for line in planner_lines
                  if '"step_dispatched"' in line and '"step": "after"' in line]
    assert len(dispatches) == 1
    assert any('"duplicate_result_ignored"' in line for line in planner_lines)


def trigger_chain(prefix: str, depth: int) -> list[dict[str, Any]]:
    """Applications prefix0 -> prefix1 -> ... each blocking on the next."""
    apps = [{"name": f"{prefix}{depth}", "steps": [{"name": "leaf", "file": "Noop"}]}]
    for level in range(depth - 1, -1, -1):
        apps.append({
            "name": f"{prefix}{level}",
            "steps": [
                {"name": "start child", "file": "TriggerApplication",
                 "application": f"{prefix}{level + 1}", "blocking": True,
                 "output_to": ["after child"]},
                {"name": "after child", "file": "Noop"},
            ],
        })
    return apps


@pytest.mark.timeout(240)
async def test_blocking_triggers_three_levels_deep_all_complete_with_two_slots(
    module_system: System,
) -> None:
    module_system.upload_step("Noop", NOOP)
    for document in trigger_chain("nest", 3):
        module_system.upload_application(document)

    run_ids = [module_system.run("nest0")["id"] for _ in range(20)]
    finals = [await module_system.wait_for(run_id, timeout_s=120) for run_id in run_ids]

    assert {doc["state"] for doc in finals} == {"SUCCESS"}
    trigger = module_system.get(f"/tasks/{finals[0]['steps'][0]['id']}")
    child = module_system.get(f"/tasks/{trigger['result']['data']['run_id']}")
    assert trigger["result"]["data"]["state"] == "SUCCESS"
    assert child["app_name"] == "nest1"
    assert child["triggered_by"][0]["application_id"] == finals[0]["id"]
    assert child["triggered_by"][0]["step"] == "start child"


async def test_non_blocking_trigger_finishes_at_once_and_the_child_runs_on(
    module_system: System, tmp_path: Path
) -> None:
    module_system.upload_step("Gated", GATED)
    module_system.upload_step("Noop", NOOP)
    module_system.upload_application(gated_application("slow_child"))
    module_system.upload_application({
        "name": "fire_and_forget",
        "steps": [{"name": "kick", "file": "TriggerApplication", "application": "slow_child",
                   "blocking": False, "params": {"gate": str(tmp_path / "gate")}}],
    })

    parent = await module_system.wait_for(module_system.run("fire_and_forget")["id"])
    kick = module_system.get(f"/tasks/{parent['steps'][0]['id']}")
    child_id = kick["result"]["data"]["run_id"]
    child_running = await module_system.wait_for(child_id, step_state="STARTED")
    (tmp_path / "gate.release").touch()
    child = await module_system.wait_for(child_id)

    assert parent["state"] == "SUCCESS"
    assert child_running["state"] == "STARTED"
    assert child["state"] == "SUCCESS"
    assert child["triggered_by"][0]["blocking"] is False


async def test_blocking_trigger_of_a_failing_child_fails_the_parent_step(
    module_system: System,
) -> None:
    module_system.upload_step("Crasher", CRASHER)
    module_system.upload_application({"name": "bad_child",
                                      "steps": [{"name": "boom", "file": "Crasher"}]})
    module_system.upload_application({
        "name": "bad_parent",
        "steps": [{"name": "wait for child", "file": "TriggerApplication",
                   "application": "bad_child"}],
    })

    doc = await module_system.wait_for(module_system.run("bad_parent")["id"])

    assert doc["state"] == "FAILURE"
    assert "ended FAILURE" in doc["steps"][0]["error"]


async def test_step_task_purged_from_jetstream_is_re_derived_from_the_store(
    system_factory: Any,
) -> None:
    system = system_factory()
    system.extra_env["IS_RECONCILE_INTERVAL"] = "1"
    system.start_all()
    system.upload_step("Noop", NOOP)
    system.upload_application({"name": "lost", "queue": "lostq",
                               "steps": [{"name": "n", "file": "Noop"}]})
    nc = await nats.connect(system.nats.url)
    published = await nc.subscribe("is.task.lostq")
    run_id = system.run("lost")["id"]
    await published.next_msg(timeout=30)

    await nc.jetstream().purge_stream("IS_TASKS", subject="is.task.lostq")
    await nc.close()
    system.start("worker-lostq", "is-stepworker", user_queues="lostq",
                 IS_WORKER_NAME="worker-lostq")
    doc = await system.wait_for(run_id, timeout_s=60)

    assert doc["state"] == "SUCCESS"
    assert '"lost_task_republished"' in (system.logs / "planner.log").read_text()
