"""A warm pool of child processes that run step code for the stepworker.

Like a prefork pool (ARCHITECTURE.md): children are started and have
imported the runtime before a task arrives, each job runs isolated from the
worker, and a child that crashes, overruns or leaves processes behind is
killed with its whole process group and replaced in the background. Children
are forked from a template that imported the runtime once
(``iscore.runtime.forkserver``), so a fresh child costs a fork, not an
interpreter start.

Payloads and outputs travel through the child's pipes, not through files:
the parent writes a payload straight from the caller's buffer in 1 MiB
pieces, so a 256 MB payload costs no second copy in the worker. Reading an
output costs about two transient copies of its size.

Containment has one known gap: a process that step code forks and that calls
``setsid()`` leaves the child's group and survives it, and RLIMIT_NPROC, the
only cap on forking here, does not bind root. Run the worker as a non-root
user or in a container with a pids limit to bound fork bombs completely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgpack
import structlog

from iscore.errors import IscoreError
from iscore.runtime.child import FRAME_HEADER, encode_frame
from iscore.runtime.forkserver import ForkClient, ForkedProcess, ForkServerError
from iscore.runtime.limits import (
    KILL_WAIT_S,
    ChildLimits,
    child_environment,
    child_pids,
    describe_error,
    group_members,
    kill_process_group,
)

log = structlog.get_logger(__name__)

# Modules a production child imports before it reports ready: the runtime,
# and the PowerFlow modules every step file imports (found on the first job
# otherwise, which cost a no-op step twice its CPU).
DEFAULT_PRELOAD = (
    "iscore.runtime.child_jobs",
    "iscore.runtime.wire",
    "iscore.runtime.execution",
    "iscore.runtime.loader",
    "ipaascore.BaseStep",
    "ipaascommon.ipaas_exceptions",
    "ipaascommon.json_utils",
)

# How long a new child may take to import its modules and report ready, in s.
START_TIMEOUT_S = 60.0

# Pipe write size for payloads, in bytes; asyncio drains between writes.
_WRITE_CHUNK_BYTES = 1024 * 1024

# StreamReader buffer limit for the frame pipe, in bytes.
_READ_LIMIT_BYTES = 4 * 1024 * 1024

# Bytes of a child's stderr kept for the detail of a failed job.
_STDERR_TAIL_BYTES = 8 * 1024

Status = Literal["ok", "error", "crashed", "timed_out"]
LogCallback = Callable[[dict[str, Any]], None]


class ChildStartError(IscoreError):
    """A child process could not start or import its modules."""

    code = "child_start_failed"


class ChildPoolClosedError(IscoreError):
    """A job was submitted to a pool that is closed or not started."""

    code = "child_pool_closed"


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How one job in a child ended.

    ``output`` is the target's return value when ``status`` is ``"ok"``.
    ``error_type`` and ``traceback`` describe an exception the target raised
    (``"error"``). ``exit_code`` or ``signal`` tell how a child died
    (``"crashed"``, ``"timed_out"``). ``detail`` is one line for people;
    ``stderr_tail`` holds the end of the child's stderr for failed jobs.
    """

    status: Status
    output: bytes | None = None
    detail: str = ""
    error_type: str | None = None
    traceback: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    pid: int | None = None
    duration_ms: int = 0
    stderr_tail: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "ok"


class _Child:
    """One child process and the parent's ends of its pipes."""

    def __init__(self, process: asyncio.subprocess.Process | ForkedProcess) -> None:
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise ValueError("A step child needs pipes on stdin, stdout and stderr.")
        self.process = process
        self.pid = process.pid
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._stderr = process.stderr
        self.jobs_count = 0
        self.exited = asyncio.ensure_future(process.wait())
        self._stderr_tail = bytearray()
        self._stderr_drain = asyncio.ensure_future(self._drain_stderr())

    @property
    def is_alive(self) -> bool:
        return self.process.returncode is None

    @property
    def stderr_tail(self) -> str:
        return self._stderr_tail.decode(errors="replace")

    def clear_stderr_tail(self) -> None:
        self._stderr_tail.clear()

    async def read_frame(self) -> dict[str, Any] | None:
        try:
            header = await self._stdout.readexactly(FRAME_HEADER.size)
            (size,) = FRAME_HEADER.unpack(header)
            body = await self._stdout.readexactly(size)
        except asyncio.IncompleteReadError:
            return None
        frame: dict[str, Any] = msgpack.unpackb(body, raw=False)
        return frame

    async def write_frame(self, head: bytes, blob: bytes) -> None:
        stdin = self._stdin
        stdin.write(head)
        view = memoryview(blob)
        for start in range(0, len(view), _WRITE_CHUNK_BYTES):
            stdin.write(view[start : start + _WRITE_CHUNK_BYTES])
            await stdin.drain()
        await stdin.drain()

    async def kill(self) -> None:
        """Kill the child's process group and wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        await self.stop()
        if _group_exists(self.pid):
            # Something the step forked is still there (or a zombie nobody
            # reaps): kill and wait group member by group member.
            await kill_process_group(self.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._stderr_drain), KILL_WAIT_S)
        self._stderr_drain.cancel()
        self._stdin.close()

    async def stop(self) -> None:
        """Kill the child process alone and wait until it has been reaped."""
        if self.is_alive:
            # Also covers a child killed before it made its own session.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), KILL_WAIT_S)

    async def _drain_stderr(self) -> None:
        # Step code prints here (fd 1 points at stderr in the child); keep the
        # end for failure details and drop the rest, so the pipe never fills.
        while chunk := await self._stderr.read(65536):
            self._stderr_tail += chunk
            del self._stderr_tail[:-_STDERR_TAIL_BYTES]


def default_import_paths() -> list[str]:
    """Return this process's import paths that a child would not have by default.

    Paths inside the interpreter or virtual environment are left out: the
    child runs the same interpreter and finds them itself.
    """
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if not os.path.isdir(path) or any(path.startswith(p + os.sep) for p in prefixes):
            continue
        if path not in paths:
            paths.append(path)
    return paths


class ChildPool:
    """Run jobs in warm, isolated child processes, at most ``size`` at a time.

    A job names a target ``"module:function"`` that the child calls with the
    payload bytes and a log callback and whose bytes it sends back. A child
    serves ``tasks_per_child`` jobs; one whose job did not end ``"ok"`` is
    replaced at once. ``workdir`` (default: a temporary directory removed by
    ``close``) is HOME and TMPDIR of the children. ``preload`` names the
    modules each child imports before it counts as warm. ``import_paths``
    becomes the children's PYTHONPATH (default: ``default_import_paths()``)
    and ``env`` is added to their scrubbed environment.
    """

    def __init__(
        self,
        *,
        size: int,
        limits: ChildLimits | None = None,
        tasks_per_child: int = 1,
        python: str = sys.executable,
        workdir: Path | None = None,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        import_paths: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if size < 1 or tasks_per_child < 1:
            raise ValueError(
                f"Pool size and tasks_per_child must be at least 1, got {size} and "
                f"{tasks_per_child}."
            )
        self.size = size
        self.limits = limits or ChildLimits()
        self.tasks_per_child = tasks_per_child
        self._python = python
        self._workdir = workdir
        self._owns_workdir = workdir is None
        self._preload = tuple(preload)
        self._import_paths = default_import_paths() if import_paths is None else list(import_paths)
        self._extra_env = dict(env or {})
        self._slots = asyncio.Semaphore(size)
        # Each entry resolves to a warm child: done for idle children, pending
        # while a replacement starts. Entries plus running jobs equal ``size``.
        self._idle: deque[asyncio.Future[_Child]] = deque()
        self._children: set[_Child] = set()
        # Forks every child from one warm template (iscore.runtime.forkserver).
        self._forks: ForkClient | None = None
        self._started = False
        self._closed = False

    @property
    def pids(self) -> set[int]:
        """Process ids of the live children, idle and busy."""
        return {child.pid for child in self._children if child.is_alive}

    async def start(self) -> None:
        """Start ``size`` children and wait until each has imported its modules.

        Raises ``ChildStartError`` (after stopping the others) if one fails.
        """
        if self._started:
            return

        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="is-step-children-"))
        (self._workdir / "tmp").mkdir(parents=True, exist_ok=True)
        options = {"limits": self.limits.to_dict(), "preload": self._preload}
        self._forks = ForkClient(
            python=self._python,
            options_json=json.dumps(options),
            env=child_environment(
                home=self._workdir, import_paths=self._import_paths, extra=self._extra_env
            ),
            cwd=self._workdir,
        )
        await self._forks.start()
        self._started = True
        results = await asyncio.gather(
            *(self._spawn() for _ in range(self.size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                await self.close()
                raise result
            self._idle.append(_resolved(result))
        log.info("child_pool_started", size=self.size, tasks_per_child=self.tasks_per_child)

    async def run(
        self,
        target: str,
        payload: bytes,
        *,
        time_limit_s: float | None,
        grace_s: float = 5.0,
        on_log: LogCallback | None = None,
    ) -> ChildResult:
        """Run ``target`` on ``payload`` in a warm child and report how it ended.

        Waits for a free child when ``size`` jobs are running. ``on_log`` gets
        each log record as the child sends it, in order. At ``time_limit_s``
        the step code gets ``SoftTimeLimitExceeded``; if the child has not
        answered ``grace_s`` later its process group is killed. Failures of
        the job are results, not exceptions; ``ChildStartError`` means no
        child could be started, ``ChildPoolClosedError`` that the pool is shut.
        """
        if not self._started or self._closed:
            raise ChildPoolClosedError("The child pool is not running; start it before run().")

        async with self._slots:
            child = await self._take_child()
            try:
                result = await self._run_job(
                    child,
                    target,
                    payload,
                    time_limit_s=time_limit_s,
                    grace_s=grace_s,
                    on_log=on_log,
                )
            except BaseException:
                await self._replace(child)
                raise
            await self._settle(child, result)
            return result

    async def close(self) -> None:
        """Kill every child with its process group and remove the temporary workdir."""
        self._closed = True
        for entry in self._idle:
            entry.cancel()
        await asyncio.gather(*self._idle, return_exceptions=True)
        self._idle.clear()
        children = list(self._children)
        self._children.clear()
        await asyncio.gather(*(child.kill() for child in children))
        if self._forks is not None:
            await self._forks.close()
            self._forks = None
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._started:
            log.info("child_pool_closed", size=self.size)

    async def __aenter__(self) -> ChildPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _spawn(self) -> _Child:
        if self._forks is None:
            raise ChildPoolClosedError("The child pool is not running; start it before run().")
        started_at = time.monotonic()
        try:
            process = await self._forks.spawn(limit=_READ_LIMIT_BYTES)
        except ForkServerError as err:
            raise ChildStartError(
                f"No step child could be forked: {err} Check the interpreter and the "
                "preloaded modules."
            ) from err
        child = _Child(process)
        self._children.add(child)
        try:
            frame = await asyncio.wait_for(child.read_frame(), START_TIMEOUT_S)
        except TimeoutError:
            frame = None
        if frame is None or "ready" not in frame:
            await self._discard(child)
            raise _start_error(child, frame)

        log.debug(
            "child_spawned",
            pid=child.pid,
            startup_ms=round((time.monotonic() - started_at) * 1000),
        )
        return child

    async def _take_child(self) -> _Child:
        if self._closed or not self._idle:
            raise ChildPoolClosedError("The child pool was closed while the job waited.")

        entry = self._idle.popleft()
        try:
            child = await asyncio.shield(entry)
        except asyncio.CancelledError:
            if not entry.cancelled():
                self._idle.appendleft(entry)
            raise
        except BaseException:
            self._refill()
            raise
        if child.is_alive:
            return child

        log.warning(
            "child_died_while_idle",
            pid=child.pid,
            exit_code=child.process.returncode,
            action="starting a replacement for the waiting job",
        )
        await self._discard(child)
        try:
            return await self._spawn()
        except BaseException:
            self._refill()
            raise

    async def _run_job(
        self,
        child: _Child,
        target: str,
        payload: bytes,
        *,
        time_limit_s: float | None,
        grace_s: float,
        on_log: LogCallback | None,
    ) -> ChildResult:
        child.jobs_count += 1
        child.clear_stderr_tail()
        started_at = time.monotonic()
        head, blob = encode_frame(
            {"target": target, "time_limit_s": time_limit_s}, "payload", payload
        )
        conversation = asyncio.ensure_future(_converse(child, head, blob, on_log))
        timeout_s = None if time_limit_s is None else time_limit_s + grace_s
        try:
            done, _ = await asyncio.wait(
                {conversation, child.exited},
                timeout=timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:
            conversation.cancel()
            raise

        answer = conversation.result() if conversation in done else None
        if answer is not None:
            result = _answer_result(answer, self.limits)
        elif not done:
            conversation.cancel()
            await child.kill()
            result = ChildResult(
                status="timed_out",
                detail=f"time limit exceeded ({time_limit_s:g} s)",
                **_exit_fields(child),
            )
        else:
            result = await _crash_result(child, conversation, self.limits)

        duration_ms = round((time.monotonic() - started_at) * 1000)
        return _finish(result, child, duration_ms)

    async def _settle(self, child: _Child, result: ChildResult) -> None:
        self._log_result(child, result)
        reusable = (
            result.succeeded
            and child.is_alive
            and child.jobs_count < self.tasks_per_child
            and not self._closed
        )
        if not reusable:
            # Stop the child first: then anything left in its process group
            # is a stray, and an empty group needs no scan of /proc.
            await child.stop()
        strays = _strays(child.pid, alive=reusable)
        if strays:
            log.warning(
                "child_strays_killed",
                pid=child.pid,
                process_count=len(strays),
                action="killed the child's process group; the step left processes running",
            )
        if reusable and not strays:
            self._idle.append(_resolved(child))
            return
        await self._replace(child)

    def _log_result(self, child: _Child, result: ChildResult) -> None:
        if result.status == "crashed":
            log.warning(
                "child_crashed",
                pid=child.pid,
                detail=result.detail,
                exit_code=result.exit_code,
                signal=result.signal,
                action="replacing the child; check the step's memory use and native code",
            )
        elif result.status == "timed_out":
            log.warning(
                "child_timed_out",
                pid=child.pid,
                detail=result.detail,
                action="killed the child's process group and replacing the child",
            )
        else:
            log.debug(
                "child_job_finished",
                pid=child.pid,
                status=result.status,
                duration_ms=result.duration_ms,
            )

    async def _replace(self, child: _Child) -> None:
        await self._discard(child)
        self._refill()

    async def _discard(self, child: _Child) -> None:
        await child.kill()
        self._children.discard(child)

    def _refill(self) -> None:
        if self._closed:
            return

        replacement = asyncio.ensure_future(self._spawn())
        replacement.add_done_callback(_report_refill_failure)
        self._idle.append(replacement)


async def _converse(
    child: _Child, head: bytes, blob: bytes, on_log: LogCallback | None
) -> dict[str, Any] | None:
    """Send one job, relay its log frames and return its answer (None on EOF)."""
    try:
        await child.write_frame(head, blob)
    except (BrokenPipeError, ConnectionResetError):
        return None

    while (frame := await child.read_frame()) is not None:
        if "log" not in frame:
            return frame
        if on_log is not None:
            on_log(frame["log"])
    return None


def _answer_result(frame: dict[str, Any], limits: ChildLimits) -> ChildResult:
    if "done" in frame:
        return ChildResult(status="ok", output=frame["done"])

    error = frame["error"]
    detail = describe_error(error["type"], error["message"], limits)
    return ChildResult(
        status="error", detail=detail, error_type=error["type"], traceback=error["traceback"]
    )


async def _crash_result(
    child: _Child, conversation: asyncio.Future[dict[str, Any] | None], limits: ChildLimits
) -> ChildResult:
    """Describe a child that died (or closed its pipe) before answering."""
    await child.kill()
    with contextlib.suppress(TimeoutError):
        # Killing the group closed the pipe, so the conversation reaches EOF;
        # an answer sent just before the death still counts.
        await asyncio.wait_for(conversation, KILL_WAIT_S)
    if not conversation.done():
        conversation.cancel()
    elif not conversation.cancelled() and (answer := conversation.result()) is not None:
        # result() re-raises what on_log raised, which the caller must see.
        return _answer_result(answer, limits)

    fields = _exit_fields(child)
    if fields["signal"] is not None:
        detail = f"killed by signal {fields['signal']}"
        if fields["signal"] == "SIGXCPU" and limits.cpu_seconds is not None:
            detail = f"CPU time limit of {limits.cpu_seconds} s exceeded (SIGXCPU)"
    else:
        detail = f"child exited with code {fields['exit_code']}"
    return ChildResult(status="crashed", detail=detail, **fields)


def _exit_fields(child: _Child) -> dict[str, Any]:
    code = child.process.returncode
    if code is None:
        return {"exit_code": None, "signal": None}
    if code < 0:
        return {"exit_code": None, "signal": signal.Signals(-code).name}
    return {"exit_code": code, "signal": None}


def _finish(result: ChildResult, child: _Child, duration_ms: int) -> ChildResult:
    stderr_tail = "" if result.succeeded else child.stderr_tail
    return ChildResult(
        status=result.status,
        output=result.output,
        detail=result.detail,
        error_type=result.error_type,
        traceback=result.traceback,
        exit_code=result.exit_code,
        signal=result.signal,
        pid=child.pid,
        duration_ms=duration_ms,
        stderr_tail=stderr_tail,
    )


def _start_error(child: _Child, frame: dict[str, Any] | None) -> ChildStartError:
    if frame is not None and "error" in frame:
        error = frame["error"]
        reason = f"{error['type']}: {error['message']}"
    else:
        last_lines = child.stderr_tail.strip().splitlines()[-1:] or ["no output"]
        reason = f"it exited before reporting ready ({last_lines[0]})"
    return ChildStartError(
        f"Step child process {child.pid} failed to start: {reason}; check the interpreter "
        f"and the preloaded modules."
    )


def _strays(pid: int, *, alive: bool) -> set[int]:
    """Processes the step left behind in the group of child ``pid``.

    A stopped child's group holds nothing but strays. For a child that stays
    in service, reading its own children is enough to refuse reusing it and
    spares a scan of all of /proc after every job; a stray that detached
    from it (double fork) is still in its group and dies with that group
    when the child is retired.
    """
    if not alive:
        return group_members(pid) if _group_exists(pid) else set()
    children = child_pids(pid)
    if children is None:
        return group_members(pid) - {pid}
    return children


def _group_exists(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resolved(child: _Child) -> asyncio.Future[_Child]:
    future: asyncio.Future[_Child] = asyncio.get_running_loop().create_future()
    future.set_result(child)
    return future


def _report_refill_failure(replacement: asyncio.Future[_Child]) -> None:
    if replacement.cancelled() or replacement.exception() is None:
        return

    log.error(
        "child_replacement_failed",
        error=str(replacement.exception()),
        action="the next job starts a child itself and fails with the same error",
    )
