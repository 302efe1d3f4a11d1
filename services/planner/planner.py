"""The planner: turns run requests into step tasks and results into progress.

It is the only writer of run state. Every transition is a compare-and-set
in the store (the fence of ARCHITECTURE.md, "Guarantees"): a redelivered
request creates no second run, a duplicate result is ignored, and a
dependent step is claimed (attempt 0 -> 1) before it is published, so it
is dispatched once however often the result that readied it arrives.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import structlog
from iscore import subjects
from iscore.bus import Bus
from iscore.consumer import Redeliver
from iscore.dag import build_dag
from iscore.errors import IscoreError
from iscore.messages import (
    DataRef,
    RetryDue,
    RunEvent,
    RunRequest,
    StepInputRef,
    StepResult,
    StepStarted,
    StepTask,
    encode,
)
from iscore.models.application import Application
from iscore.models.run import RunRecord, RunState, StepTaskRecord
from iscore.preparation import PreparedRun, prepare_run
from iscore.reporting import record_report_rows
from iscore.retry import retries_left, retry_delay_s
from iscore.secrets import to_task_configuration
from iscore.stores.base import Store
from iscore.trigger import is_trigger
from opentelemetry import trace

from services.planner.context import (
    ACTIVE,
    ReplayTargetMissingError,
    RunContext,
    StepSourceMissingError,
    TaskMissingError,
    _log_rows,
    _result_ref,
    _tasks_for,
    new_run_id,
    now,
)
from services.planner.reconciler import Reconciliation
from services.planner.revocation import Revocation
from services.planner.triggers import TriggerSteps

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("is.planner")

# How many runs keep their decoded application and DAG in memory.
RUN_CACHE_SIZE = 512


class Planner(TriggerSteps, Revocation, Reconciliation):
    """Handles run requests and step events; holds no worker while waiting."""

    def __init__(self, bus: Bus, store: Store) -> None:
        self.bus = bus
        self.store = store
        self._runs: dict[str, RunContext] = {}

    # Run requests -------------------------------------------------------

    async def start_run(self, request: RunRequest) -> RunRecord:
        """Record the run and dispatch its first steps (idempotent)."""
        run_id = request.run_id or new_run_id()
        existing = await self.store.get_run(run_id)
        if existing is not None:
            # A redelivered request: finish what a crash may have interrupted.
            await self.reconcile_run(run_id)
            return existing

        with structlog.contextvars.bound_contextvars(
            run_id=run_id, application=request.application
        ):
            try:
                run, tasks, prepared = await self._plan(run_id, request)
            except IscoreError as err:
                run = self._refused_run(run_id, request, err)
                await self.store.create_run(run, [])
                log.info("run_refused", reason=str(err))
                await self._announce(run.run_id, run.state)
                await self._notify_parent(run, run.state)
                return run

            if not await self.store.create_run(run, tasks):
                return run
            log.info("run_started", step_count=len(tasks), queue=run.queue)
            await self._announce(run_id, RunState.STARTED)
            # What was just stored is what _context would read back.
            ctx = await self._open_context(run, prepared.application, tasks)
            for name in ctx.dag.roots():
                await self._dispatch(ctx, name)
            return run

    async def _plan(
        self, run_id: str, request: RunRequest
    ) -> tuple[RunRecord, list[StepTaskRecord], PreparedRun]:
        prepared = await self._prepare(request)
        plan = prepared.plan
        run = RunRecord(
            run_id=run_id,
            application=prepared.application.name,
            application_version=prepared.record.version,
            state=RunState.STARTED,
            app_variables=plan.app_variables,
            params=request.params,
            queue=plan.queue,
            configuration=plan.configuration,
            triggered_by=[t.model_dump() for t in request.triggered_by]
            or [{"application_id": run_id, "triggered_by": "USER"}],
            created_at=datetime.fromtimestamp(request.requested_at, UTC),
            started_at=now(),
            step_versions=prepared.step_versions,
            replay_of=request.replay_of,
            configuration_version=prepared.configuration_version,
        )
        return run, _tasks_for(run_id, plan), prepared

    async def _prepare(self, request: RunRequest) -> PreparedRun:
        if request.replay_of is None:
            return await prepare_run(self.store, request.application, request.params)
        # Issue 4, replay: the same application version, step versions,
        # variables, configuration snapshot and queue as the original.
        original = await self.store.get_run(request.replay_of)
        if original is None:
            raise ReplayTargetMissingError(request.replay_of)
        return await prepare_run(
            self.store,
            original.application,
            original.params,
            application_version=original.application_version,
            step_versions=original.step_versions,
            configuration_version=original.configuration_version,
        )

    def _refused_run(self, run_id: str, request: RunRequest, err: IscoreError) -> RunRecord:
        stamp = now()
        return RunRecord(
            run_id=run_id,
            application=request.application,
            application_version=0,
            state=RunState.FAILURE,
            app_variables={},
            params=request.params,
            queue=str(request.params.get("queue") or subjects.DEFAULT_QUEUE),
            configuration=None,
            triggered_by=[t.model_dump() for t in request.triggered_by]
            or [{"application_id": run_id, "triggered_by": "USER"}],
            created_at=stamp,
            started_at=stamp,
            finished_at=stamp,
            step_versions={},
            error=str(err),
            replay_of=request.replay_of,
        )

    # Step events --------------------------------------------------------

    async def step_started(self, event: StepStarted) -> None:
        fields: dict[str, Any] = {
            "state": RunState.STARTED,
            "started_at": datetime.fromtimestamp(event.started_at, UTC),
            "worker": event.worker,
        }
        changed = await self.store.update_step_task(
            event.task_id,
            from_states={RunState.PENDING, RunState.RETRY},
            expected_attempt=event.attempt,
            **fields,
        )
        if not changed:
            return
        ctx = await self._context(event.run_id)
        if ctx is not None:
            self._mirror(ctx, event.task_id, fields)
        await self._announce(event.run_id, RunState.STARTED, task_id=event.task_id)

    async def step_finished(self, result: StepResult) -> None:
        """Accept the first result of an attempt, then move the run on."""
        state = RunState.SUCCESS if result.succeeded else RunState.FAILURE
        if state is RunState.FAILURE and await self._schedule_retry(result):
            return
        fields: dict[str, Any] = {
            "state": state,
            "result": _result_ref(result),
            "has_data": result.saved,
            "error": result.error,
            "traceback": result.traceback,
            "finished_at": datetime.fromtimestamp(result.finished_at, UTC),
            "worker": result.worker,
        }
        accepted = await self.store.update_step_task(
            result.task_id, from_states=ACTIVE, expected_attempt=result.attempt, **fields
        )
        if not accepted:
            await self._discard_duplicate(result)
            return

        await self.store.append_logs(result.task_id, _log_rows(result))
        ctx = await self._context(result.run_id)
        if ctx is None:
            return
        await record_report_rows(self.store, ctx.run, result)
        task = self._mirror(ctx, result.task_id, fields)
        duration_ms = int((result.finished_at - result.started_at) * 1000)
        await self._after_final(ctx, task, state, duration_ms=duration_ms)

    async def _after_final(
        self, ctx: RunContext, task: StepTaskRecord, state: RunState, *, duration_ms: int = 0
    ) -> None:
        """Move the run on once ``task`` reached final ``state``."""
        with structlog.contextvars.bound_contextvars(
            run_id=task.run_id, step=task.name, task_id=task.task_id
        ):
            log.info(
                "step_finished", state=state.value, attempt=task.attempt, duration_ms=duration_ms
            )
            await self._announce(task.run_id, state, step=task.name, task_id=task.task_id)
            if state is RunState.SUCCESS:
                await self._dispatch_dependents(ctx, task.name)
            else:
                await self._skip_descendants(ctx, task.name)
            await self._finish_if_done(ctx)

    async def _schedule_retry(self, result: StepResult) -> bool:
        """Turn a failed attempt into state RETRY when retries are left.

        The next attempt is a ``RetryDue`` message in JetStream, held back by
        delayed redelivery until it is due, so a pending retry survives a
        restart of every service (MANUAL-NOTES 17).
        """
        task = await self.store.get_step_task(result.task_id)
        if task is None or not retries_left(task.entry, result.attempt):
            return False
        delay = retry_delay_s(task.entry, result.attempt)
        due_at = time.time() + delay
        changed = await self.store.update_step_task(
            result.task_id,
            from_states=ACTIVE,
            expected_attempt=result.attempt,
            state=RunState.RETRY,
            attempt=result.attempt + 1,
            error=result.error,
            traceback=result.traceback,
            next_attempt_at=datetime.fromtimestamp(due_at, UTC),
            worker=result.worker,
        )
        if not changed:
            await self._discard_duplicate(result)
            return True
        await self.store.append_logs(result.task_id, _log_rows(result))
        due = RetryDue(
            task_id=task.task_id, run_id=task.run_id, attempt=result.attempt + 1, due_at=due_at
        )
        await self.bus.publish(
            subjects.RETRY_DUE, due, msg_id=f"retry:{task.task_id}:{due.attempt}"
        )
        ctx = await self._context(task.run_id)
        if ctx is not None:
            await self._refresh_task(ctx, task.task_id)
        log.warning(
            "retry_scheduled",
            run_id=task.run_id,
            step=task.name,
            task_id=task.task_id,
            attempt=result.attempt + 1,
            delay_s=round(delay, 3),
        )
        await self._announce(task.run_id, RunState.RETRY, step=task.name, task_id=task.task_id)
        return True

    async def retry_due(self, due: RetryDue) -> Redeliver | None:
        """Dispatch a retry once it is due; until then leave it in JetStream."""
        wait = due.due_at - time.time()
        if wait > 0:
            return Redeliver(wait)
        ctx = await self._context(due.run_id)
        if ctx is None:
            return None
        task = await self._refresh_task(ctx, due.task_id)
        if task.state is RunState.RETRY and task.attempt == due.attempt:
            await self._publish_task(ctx, task)
        return None

    async def _discard_duplicate(self, result: StepResult) -> None:
        log.warning(
            "duplicate_result_ignored",
            run_id=result.run_id,
            task_id=result.task_id,
            attempt=result.attempt,
        )
        current = await self.store.get_step_task(result.task_id)
        kept = current.result if current is not None else None
        if (
            result.data is not None
            and result.data.object
            and (not kept or kept.get("object") != result.data.object)
        ):
            await self.bus.delete_data(result.data.object)

    async def _dispatch_dependents(self, ctx: RunContext, name: str) -> None:
        for dependent in ctx.dag.outputs_of(name):
            inputs = ctx.dag.inputs_of(dependent)
            if all(ctx.by_name(i).state is RunState.SUCCESS for i in inputs):
                await self._dispatch(ctx, dependent)

    async def _skip_descendants(
        self, ctx: RunContext, name: str, *, state: RunState = RunState.FAILURE
    ) -> None:
        # MANUAL-NOTES 9: dependents of a failed step do not run and say so;
        # independent branches go on.
        cause = "was revoked" if state is RunState.REVOKED else "failed"
        for descendant in sorted(ctx.dag.descendants(name)):
            task = ctx.by_name(descendant)
            reason = f"Not run: step {name!r}, which it depends on, {cause}."
            changed = await self.store.update_step_task(
                task.task_id,
                from_states={RunState.PENDING},
                expected_attempt=0,
                state=state,
                error=reason,
                finished_at=now(),
            )
            if changed:
                await self._refresh_task(ctx, task.task_id)

    async def _finish_if_done(self, ctx: RunContext) -> None:
        if not ctx.is_finished():
            return
        states = {t.state for t in ctx.tasks.values()}
        final = RunState.SUCCESS
        if RunState.FAILURE in states:
            final = RunState.FAILURE
        elif RunState.REVOKED in states:
            final = RunState.REVOKED
        changed = await self.store.update_run(
            ctx.run.run_id, from_states=ACTIVE, state=final, finished_at=now()
        )
        self._runs.pop(ctx.run.run_id, None)
        if changed:
            log.info("run_finished", run_id=ctx.run.run_id, state=final.value)
            await self._announce(ctx.run.run_id, final)
            await self._notify_parent(ctx.run, final)

    # Dispatch -----------------------------------------------------------

    async def _dispatch(self, ctx: RunContext, name: str) -> None:
        """Claim step ``name`` (attempt 0 -> 1) and publish its task once."""
        task = ctx.by_name(name)
        if task.attempt == 0:
            fields: dict[str, Any] = {"attempt": 1, "dispatched_at": now()}
            claimed = await self.store.update_step_task(
                task.task_id, from_states={RunState.PENDING}, expected_attempt=0, **fields
            )
            if not claimed:
                return
            task = self._mirror(ctx, task.task_id, fields)
        await self._publish_task(ctx, task)

    async def _publish_task(
        self, ctx: RunContext, task: StepTaskRecord, *, msg_id_suffix: str = ""
    ) -> None:
        if is_trigger(task.file):
            await self._start_child(ctx, task)
            return
        source, version = await self._source(ctx, task.file)
        message = StepTask(
            task_id=task.task_id,
            run_id=ctx.run.run_id,
            attempt=task.attempt,
            application=ctx.run.application,
            name=task.name,
            file=task.file,
            source=source,
            step_version=version,
            entry=task.entry,
            app_variables=ctx.run.app_variables,
            configuration=ctx.configuration,
            inputs=[self._input_ref(ctx, i) for i in ctx.dag.inputs_of(task.name)],
            time_limit_s=task.entry.get("time_limit"),
        )
        with tracer.start_as_current_span(
            "dispatch step", attributes={"run_id": ctx.run.run_id, "step": task.name}
        ):
            await self.bus.publish(
                subjects.task_subject(task.queue),
                message,
                msg_id=f"{task.task_id}:{task.attempt}{msg_id_suffix}",
            )
        log.debug("step_dispatched", step=task.name, task_id=task.task_id, queue=task.queue)

    def _input_ref(self, ctx: RunContext, name: str) -> StepInputRef:
        task = ctx.by_name(name)
        ref = task.result or {}
        data = None
        if task.has_data:
            data = DataRef(
                inline=ref.get("inline"),
                object=ref.get("object"),
                size_bytes=int(ref.get("size_bytes", 0)),
            )
        return StepInputRef(
            step_name=name, has_data=task.has_data, parameters=task.entry, data=data
        )

    async def _source(self, ctx: RunContext, file: str) -> tuple[str, int]:
        if file not in ctx.sources:
            version = ctx.run.step_versions.get(file)
            step = await self.store.get_step(file, version)
            if step is None:
                raise StepSourceMissingError(file, version)
            ctx.sources[file] = (step.source, step.version)
        return ctx.sources[file]

    # State --------------------------------------------------------------

    async def _context(self, run_id: str) -> RunContext | None:
        ctx = self._runs.get(run_id)
        if ctx is not None:
            return ctx
        run = await self.store.get_run(run_id)
        if run is None or run.state.is_final:
            return None
        record = await self.store.get_application(run.application, run.application_version)
        if record is None:
            return None
        application = Application.from_document(record.document)
        tasks = await self.store.list_step_tasks(run_id)
        return await self._open_context(run, application, tasks)

    async def _open_context(
        self, run: RunRecord, application: Application, tasks: list[StepTaskRecord]
    ) -> RunContext:
        """Build a run's context from its records and keep it in the cache."""
        ctx = RunContext(
            run=run,
            dag=build_dag(application.steps),
            tasks={task.name: task for task in tasks},
            configuration=await self._configuration_values(run),
        )
        if len(self._runs) >= RUN_CACHE_SIZE:
            self._runs.pop(next(iter(self._runs)))
        self._runs[run.run_id] = ctx
        return ctx

    async def _configuration_values(self, run: RunRecord) -> dict[str, Any]:
        if not run.configuration:
            return {}
        record = await self.store.get_configuration(run.configuration, run.configuration_version)
        if record is None:
            return {}
        # Encrypted values stay ciphertext; only the worker decrypts them.
        return to_task_configuration(record.name, record.document)

    def _mirror(self, ctx: RunContext, task_id: str, fields: dict[str, Any]) -> StepTaskRecord:
        """Apply a compare-and-set that succeeded to the run's copy in memory.

        The planner is the only writer of run state, so after a successful
        compare-and-set the stored task is the cached one plus ``fields``
        (a context read after the write holds them already); reading the task
        back would only cost a store round trip per state change.
        """
        task = ctx.by_id(task_id).model_copy(update=fields)
        ctx.tasks[task.name] = task
        return task

    async def _refresh_task(self, ctx: RunContext, task_id: str) -> StepTaskRecord:
        task = await self.store.get_step_task(task_id)
        if task is None:
            raise TaskMissingError(task_id)
        ctx.tasks[task.name] = task
        return task

    async def _announce(
        self,
        run_id: str,
        state: RunState,
        *,
        step: str | None = None,
        task_id: str | None = None,
    ) -> None:
        event = RunEvent(run_id=run_id, state=state.value, step=step, task_id=task_id)
        await self.bus.nc.publish(subjects.run_event_subject(run_id), encode(event))
