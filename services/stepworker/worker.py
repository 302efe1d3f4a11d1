"""The stepworker: pulls step tasks when a slot is free and runs them.

One slot is one warm child process. A task is fetched only when a slot is
free (the manual's ``-Ofair``), heartbeated with in-progress acks while it
runs, and acknowledged only after its result is stored in JetStream
(ack-late), so a worker killed mid-step loses nothing: JetStream hands the
task to another worker after the ack wait. Workers never touch the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace

from iscore import subjects
from iscore.bus import Bus
from iscore.consumer import pull_subscription
from iscore.keyring import KeyFileError, default_key_source
from iscore.messages import (
    DataRef,
    KillTasks,
    MessageInvalidError,
    StepLogLine,
    StepResult,
    StepStarted,
    StepTask,
    decode,
)
from iscore.outcome_effects import apply_outcome_effects
from iscore.runtime.limits import memory_limit_error
from iscore.runtime.pool import ChildPool, ChildResult
from iscore.runtime.wire import outcome_header_and_data
from iscore.secrets import (
    SecretError,
    refused_result,
    reveal_configuration,
    screen_child,
    scrub_result,
)
from iscore.settings import Settings
from iscore.telemetry import extract_context

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("is.stepworker")

EXECUTE_TARGET = "iscore.runtime.child_jobs:execute"
# Log lines kept per attempt; the rest are counted, not stored.
MAX_LOG_LINES = 5000


class StepWorker:
    """Serves the queues in ``settings.user_queues`` with ``worker_threads`` slots."""

    def __init__(self, bus: Bus, pool: ChildPool, settings: Settings) -> None:
        self.bus = bus
        self.pool = pool
        self.settings = settings
        self.slots = asyncio.Semaphore(settings.worker_threads)
        self.scratch = Path(tempfile.mkdtemp(prefix="is-worker-"))
        self._running: set[asyncio.Task[None]] = set()
        self._by_task: dict[str, asyncio.Task[None]] = {}
        self._revoked: set[str] = set()

    async def serve(self, stop: asyncio.Event) -> None:
        subs = [
            await pull_subscription(
                self.bus,
                subject=subjects.task_subject(queue),
                durable=subjects.worker_consumer(queue),
                stream=subjects.TASKS_STREAM,
                ack_wait_s=self.settings.ack_wait_s,
            )
            for queue in self.settings.user_queues
        ]
        await self.bus.nc.subscribe(subjects.KILL_TASKS, cb=self._on_kill)
        log.info(
            "worker_started",
            queues=list(self.settings.user_queues),
            slot_count=self.settings.worker_threads,
        )
        # With one queue a fetch can wait long; with several, short waits
        # keep every queue served.
        wait_s = 1.0 if len(subs) == 1 else 0.2
        while not stop.is_set():
            await self.slots.acquire()
            msg = await self._fetch_one(subs, wait_s, stop)
            if msg is None:
                self.slots.release()
                continue
            job = asyncio.create_task(self._handle(msg))
            self._running.add(job)
            job.add_done_callback(self._job_done)
        await self._drain()

    async def _drain(self) -> None:
        """Let running steps finish within the grace period, then give them back.

        A step still running after ``shutdown_grace_s`` is killed and its task
        nak'ed, so JetStream hands it to the next worker at once (steps run at
        least once; the planner accepts one result).
        """
        if not self._running:
            return
        log.info(
            "worker_draining",
            running_count=len(self._running),
            grace_s=self.settings.shutdown_grace_s,
        )
        _, pending = await asyncio.wait(set(self._running), timeout=self.settings.shutdown_grace_s)
        for job in pending:
            job.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _on_kill(self, msg: Msg) -> None:
        """Kill running attempts of revoked tasks (the planner's broadcast)."""
        try:
            kill = decode(msg.data, KillTasks)
        except MessageInvalidError as err:
            await self.bus.dead_letter(msg.subject, msg.data, str(err))
            return
        for task_id in kill.task_ids:
            job = self._by_task.get(task_id)
            if job is not None:
                self._revoked.add(task_id)
                job.cancel()

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._running.discard(job)
        self.slots.release()

    async def _fetch_one(
        self,
        subs: list[JetStreamContext.PullSubscription],
        wait_s: float,
        stop: asyncio.Event,
    ) -> Msg | None:
        for sub in subs:
            if stop.is_set():
                return None
            try:
                messages = await sub.fetch(1, timeout=wait_s)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception:  # reconnecting; the loop tries again.  # noqa: BLE001
                log.warning("fetch_failed", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if messages:
                return messages[0]
        return None

    async def _handle(self, msg: Msg) -> None:
        try:
            task = decode(msg.data, StepTask)
        except MessageInvalidError as err:
            await self.bus.dead_letter(msg.subject, msg.data, str(err), msg.headers)
            await msg.term()
            return

        if await self.bus.is_revoked(task.run_id, task.task_id):
            log.info("revoked_task_dropped", run_id=task.run_id, task_id=task.task_id)
            await msg.ack()
            return

        token = otel_context.attach(extract_context(msg.headers))
        current = asyncio.current_task()
        if current is not None:
            self._by_task[task.task_id] = current
        try:
            with structlog.contextvars.bound_contextvars(
                run_id=task.run_id, step=task.name, task_id=task.task_id
            ):
                await self._run_task(task, msg)
        except asyncio.CancelledError:
            if task.task_id in self._revoked:
                # Killed on revoke: the planner already recorded REVOKED.
                log.info("revoked_task_killed", run_id=task.run_id, task_id=task.task_id)
                with contextlib.suppress(Exception):
                    await msg.ack()
                return
            log.warning("task_given_back", reason="worker stopping", task_id=task.task_id)
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception:  # keep serving; JetStream redelivers the task.  # noqa: BLE001
            log.error("task_handling_failed", exc_info=True)
            with contextlib.suppress(Exception):
                await msg.nak(delay=2.0)
        finally:
            self._by_task.pop(task.task_id, None)
            self._revoked.discard(task.task_id)
            otel_context.detach(token)

    async def _run_task(self, task: StepTask, msg: Msg) -> None:
        started_at = time.time()
        delivered = msg.metadata.num_delivered if msg.metadata else 1
        if delivered > 1:
            log.warning("task_redelivered", delivery_count=delivered, attempt=task.attempt)
        # The step starts while JetStream stores the started event; the
        # result is published only once that is stored, so the planner never
        # sees the result first.
        started = asyncio.create_task(
            self.bus.publish(
                subjects.STEP_STARTED,
                StepStarted(
                    task_id=task.task_id,
                    run_id=task.run_id,
                    attempt=task.attempt,
                    worker=self.settings.worker_name,
                    started_at=started_at,
                ),
            )
        )
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            with tracer.start_as_current_span(
                "step attempt",
                attributes={"run_id": task.run_id, "step": task.name, "attempt": task.attempt},
            ):
                result = await self._execute(task, started_at)
            await started
            await self.bus.publish(
                subjects.STEP_RESULT,
                result,
                msg_id=f"result:{task.task_id}:{task.attempt}:{delivered}",
            )
        finally:
            heartbeat.cancel()
            if not started.done():
                started.cancel()
            elif not started.cancelled():
                # Retrieved here when the step's own error is what propagates.
                started.exception()
        # Ack-late: only now is the result durable in JetStream.
        await msg.ack()
        log.info(
            "step_attempt_finished",
            succeeded=result.succeeded,
            attempt=task.attempt,
            duration_ms=int((result.finished_at - started_at) * 1000),
        )

    async def _heartbeat(self, msg: Msg) -> None:
        interval = max(0.5, self.settings.ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _execute(self, task: StepTask, started_at: float) -> StepResult:
        # Plaintext of encrypted configuration values exists from here until
        # the child has it; results leaving the worker are masked.
        try:
            revealed = reveal_configuration(default_key_source().ring(), task.configuration)
        except (SecretError, KeyFileError) as err:
            return refused_result(
                task, err, worker=self.settings.worker_name, started_at=started_at
            )
        payload = await self._wire_invocation(task, revealed.configuration)
        time_limit = task.time_limit_s or self.settings.task_soft_time_limit_s
        child = await self.pool.run(
            EXECUTE_TARGET,
            payload,
            time_limit_s=time_limit,
            grace_s=self.settings.time_limit_grace_s,
        )
        child = screen_child(revealed, child)
        return scrub_result(revealed, await self._to_result(task, child, started_at))

    async def _wire_invocation(self, task: StepTask, configuration: dict[str, Any]) -> bytes:
        """Build the child's invocation bytes (``iscore.runtime.wire`` format)."""
        inputs = []
        for ref in task.inputs:
            data = None
            if ref.has_data and ref.data is not None:
                data = await self._input_bytes(ref.data)
            inputs.append(
                {
                    "step_name": ref.step_name,
                    "has_data": ref.has_data,
                    "parameters": ref.parameters,
                    "data": data,
                }
            )
        wire: bytes = msgpack.packb(
            {
                "v": 1,
                "source": task.source,
                "file": task.file,
                "entry": task.entry,
                "app_variables": task.app_variables,
                "configuration": configuration,
                "application": task.application,
                "run_id": task.run_id,
                "task_id": task.task_id,
                "attempt": task.attempt,
                "inputs": inputs,
                "cache_url": self.settings.nats_url,
            },
            use_bin_type=True,
        )
        return wire

    async def _input_bytes(self, ref: DataRef) -> bytes:
        if ref.object is None:
            return ref.inline or b""
        # A directory only for data that comes through the object store:
        # most steps take their inputs inline and touch no disk here.
        workdir = Path(tempfile.mkdtemp(dir=self.scratch, prefix="input-"))
        try:
            path = await self.bus.get_data_to_file(ref.object, workdir)
            return await asyncio.to_thread(path.read_bytes)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _to_result(self, task: StepTask, child: ChildResult, started_at: float) -> StepResult:
        common: dict[str, Any] = {
            "task_id": task.task_id,
            "run_id": task.run_id,
            "attempt": task.attempt,
            "worker": self.settings.worker_name,
            "started_at": started_at,
        }
        if child.status != "ok" or child.output is None:
            error_type = "TimeLimitExceeded" if child.status == "timed_out" else "WorkerLost"
            return StepResult(
                **common,
                succeeded=False,
                error_type=error_type,
                error=child.detail,
                traceback=child.detail,
                finished_at=time.time(),
            )

        header, data = outcome_header_and_data(child.output)
        if header.get("error_type") == "MemoryError" and (
            named := memory_limit_error(self.pool.limits)
        ):
            # Almost always the step's memory limit: say which.
            header["error"] = named
        logs = header.get("logs") or []
        ref = await self._store_output(task, data) if header.get("saved") else None
        return StepResult(
            **common,
            succeeded=header.get("error_type") is None,
            saved=bool(header.get("saved")),
            data=ref,
            logs=[StepLogLine.model_validate(line) for line in logs[:MAX_LOG_LINES]],
            logs_truncated_count=max(0, len(logs) - MAX_LOG_LINES),
            error_type=header.get("error_type"),
            error=header.get("error"),
            traceback=header.get("traceback"),
            finished_at=time.time(),
            **await apply_outcome_effects(self.bus, header),
        )

    async def _store_output(self, task: StepTask, data: bytes | None) -> DataRef:
        payload = data or b""
        if len(payload) <= self.settings.inline_limit_bytes:
            return DataRef(inline=payload, size_bytes=len(payload))
        name = f"{task.run_id}/{task.task_id}/{task.attempt}/{uuid.uuid4().hex}"
        size = await self.bus.put_data(name, payload)
        return DataRef(object=name, size_bytes=size)
