"""The planner: turns run requests into step tasks and results into progress.

It is the only writer of run state. Every transition is a compare-and-set
in the store (the fence of ARCHITECTURE.md, "Guarantees"): a redelivered
request creates no second run, a duplicate result is ignored, and a
dependent step is claimed (attempt 0 -> 1) before it is published, so it
is dispatched once however often the result that readied it arrives.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from opentelemetry import trace

from iscore import subjects
from iscore.bus import Bus
from iscore.dag import Dag, build_dag
from iscore.errors import IscoreError
from iscore.messages import (
    DataRef,
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
from iscore.planning import RunPlan
from iscore.preparation import prepare_run
from iscore.stores.base import Store

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("is.planner")

ACTIVE = frozenset({RunState.PENDING, RunState.STARTED, RunState.RETRY})
# How many runs keep their decoded application and DAG in memory.
RUN_CACHE_SIZE = 512


def now() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    return f"isapp-{uuid.uuid4()}"


@dataclass
class RunContext:
    """What the planner keeps in memory about one unfinished run."""

    run: RunRecord
    dag: Dag
    tasks: dict[str, StepTaskRecord]
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)

    def by_name(self, name: str) -> StepTaskRecord:
        return self.tasks[name]

    def is_finished(self) -> bool:
        return all(t.state.is_final for t in self.tasks.values())


class Planner:
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

        with structlog.contextvars.bound_contextvars(run_id=run_id, application=request.application):
            try:
                run, tasks = await self._plan(run_id, request)
            except IscoreError as err:
                run = self._refused_run(run_id, request, err)
                await self.store.create_run(run, [])
                log.info("run_refused", reason=str(err))
                await self._announce(run.run_id, run.state)
                return run

            if not await self.store.create_run(run, tasks):
                return run
            log.info("run_started", step_count=len(tasks), queue=run.queue)
            await self._announce(run_id, RunState.STARTED)
            ctx = await self._context(run_id)
            if ctx is not None:
                for name in ctx.dag.roots():
                    await self._dispatch(ctx, name)
            return run

    async def _plan(
        self, run_id: str, request: RunRequest
    ) -> tuple[RunRecord, list[StepTaskRecord]]:
        prepared = await prepare_run(self.store, request.application, request.params)
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
        )
        return run, _tasks_for(run_id, plan)

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
        changed = await self.store.update_step_task(
            event.task_id,
            from_states={RunState.PENDING, RunState.RETRY},
            expected_attempt=event.attempt,
            state=RunState.STARTED,
            started_at=datetime.fromtimestamp(event.started_at, UTC),
            worker=event.worker,
        )
        if not changed:
            return
        ctx = await self._context(event.run_id)
        if ctx is not None:
            await self._refresh_task(ctx, event.task_id)
        await self._announce(event.run_id, RunState.STARTED, task_id=event.task_id)

    async def step_finished(self, result: StepResult) -> None:
        """Accept the first result of an attempt, then move the run on."""
        state = RunState.SUCCESS if result.succeeded else RunState.FAILURE
        accepted = await self.store.update_step_task(
            result.task_id,
            from_states=ACTIVE,
            expected_attempt=result.attempt,
            state=state,
            result=_result_ref(result),
            has_data=result.saved,
            error=result.error,
            traceback=result.traceback,
            finished_at=datetime.fromtimestamp(result.finished_at, UTC),
            worker=result.worker,
        )
        if not accepted:
            await self._discard_duplicate(result)
            return

        await self.store.append_logs(result.task_id, _log_rows(result))
        ctx = await self._context(result.run_id)
        if ctx is None:
            return
        task = await self._refresh_task(ctx, result.task_id)
        with structlog.contextvars.bound_contextvars(
            run_id=result.run_id, step=task.name, task_id=task.task_id
        ):
            log.info(
                "step_finished",
                state=state.value,
                attempt=result.attempt,
                duration_ms=int((result.finished_at - result.started_at) * 1000),
            )
            await self._announce(result.run_id, state, step=task.name, task_id=task.task_id)
            if state is RunState.SUCCESS:
                await self._dispatch_dependents(ctx, task.name)
            else:
                await self._skip_descendants(ctx, task.name)
            await self._finish_if_done(ctx)

    async def _discard_duplicate(self, result: StepResult) -> None:
        log.warning(
            "duplicate_result_ignored",
            run_id=result.run_id,
            task_id=result.task_id,
            attempt=result.attempt,
        )
        current = await self.store.get_step_task(result.task_id)
        kept = current.result if current is not None else None
        if result.data is not None and result.data.object and (
            not kept or kept.get("object") != result.data.object
        ):
            await self.bus.delete_data(result.data.object)

    async def _dispatch_dependents(self, ctx: RunContext, name: str) -> None:
        for dependent in ctx.dag.outputs_of(name):
            inputs = ctx.dag.inputs_of(dependent)
            if all(ctx.by_name(i).state is RunState.SUCCESS for i in inputs):
                await self._dispatch(ctx, dependent)

    async def _skip_descendants(self, ctx: RunContext, name: str) -> None:
        # MANUAL-NOTES 9: dependents of a failed step do not run and say so;
        # independent branches go on.
        for descendant in sorted(ctx.dag.descendants(name)):
            task = ctx.by_name(descendant)
            reason = f"Not run: step {name!r}, which it depends on, failed."
            changed = await self.store.update_step_task(
                task.task_id,
                from_states={RunState.PENDING},
                expected_attempt=0,
                state=RunState.FAILURE,
                error=reason,
                finished_at=now(),
            )
            if changed:
                await self._refresh_task(ctx, task.task_id)

    async def _finish_if_done(self, ctx: RunContext) -> None:
        if not ctx.is_finished():
            return
        failed = any(t.state is RunState.FAILURE for t in ctx.tasks.values())
        final = RunState.FAILURE if failed else RunState.SUCCESS
        changed = await self.store.update_run(
            ctx.run.run_id, from_states=ACTIVE, state=final, finished_at=now()
        )
        self._runs.pop(ctx.run.run_id, None)
        if changed:
            log.info("run_finished", run_id=ctx.run.run_id, state=final.value)
            await self._announce(ctx.run.run_id, final)

    # Dispatch -----------------------------------------------------------

    async def _dispatch(self, ctx: RunContext, name: str) -> None:
        """Claim step ``name`` (attempt 0 -> 1) and publish its task once."""
        task = ctx.by_name(name)
        if task.attempt == 0:
            claimed = await self.store.update_step_task(
                task.task_id,
                from_states={RunState.PENDING},
                expected_attempt=0,
                attempt=1,
                dispatched_at=now(),
            )
            if not claimed:
                return
            task = await self._refresh_task(ctx, task.task_id)
        await self._publish_task(ctx, task)

    async def _publish_task(self, ctx: RunContext, task: StepTaskRecord) -> None:
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
                msg_id=f"{task.task_id}:{task.attempt}",
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
        tasks = {t.name: t for t in await self.store.list_step_tasks(run_id)}
        ctx = RunContext(run=run, dag=build_dag(application.steps), tasks=tasks)
        ctx.configuration = await self._configuration_values(run.configuration)
        if len(self._runs) >= RUN_CACHE_SIZE:
            self._runs.pop(next(iter(self._runs)))
        self._runs[run_id] = ctx
        return ctx

    async def _configuration_values(self, name: str | None) -> dict[str, Any]:
        if not name:
            return {}
        record = await self.store.get_configuration(name)
        if record is None:
            return {}
        return {
            item["name"]: item.get("value")
            for item in record.document.get("configuration_data", [])
        }

    async def _refresh_task(self, ctx: RunContext, task_id: str) -> StepTaskRecord:
        task = await self.store.get_step_task(task_id)
        if task is None:
            raise TaskMissingError(task_id)
        ctx.tasks[task.name] = task
        return task

    async def reconcile_run(self, run_id: str) -> None:
        """Re-derive what a crash may have lost for one unfinished run.

        Claimed-but-unfinished steps are published again under the same
        message id (JetStream drops the copy if the first got through);
        steps whose inputs all succeeded are dispatched; a finished run is
        closed.
        """
        self._runs.pop(run_id, None)
        ctx = await self._context(run_id)
        if ctx is None:
            return
        for name in ctx.dag.topological_order():
            task = ctx.by_name(name)
            if task.state in (RunState.PENDING, RunState.STARTED) and task.attempt > 0:
                await self._publish_task(ctx, task)
            elif task.state is RunState.PENDING and all(
                ctx.by_name(i).state is RunState.SUCCESS for i in ctx.dag.inputs_of(name)
            ):
                await self._dispatch(ctx, name)
            elif task.state is RunState.FAILURE:
                await self._skip_descendants(ctx, name)
        await self._finish_if_done(ctx)

    async def reconcile_all(self) -> int:
        runs = await self.store.unfinished_runs()
        for run in runs:
            await self.reconcile_run(run.run_id)
        return len(runs)

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


class StepSourceMissingError(IscoreError):
    code = "step_not_found"

    def __init__(self, file: str, version: int | None) -> None:
        super().__init__(f"Step file {file!r} version {version} is no longer stored.")
        self.file = file


class TaskMissingError(IscoreError):
    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"Step task {task_id!r} is not in the store.")
        self.task_id = task_id


def _tasks_for(run_id: str, plan: RunPlan) -> list[StepTaskRecord]:
    tasks = []
    for position, name in enumerate(plan.dag.names):
        entry = plan.steps[name]
        tasks.append(
            StepTaskRecord(
                task_id=str(uuid.uuid4()),
                run_id=run_id,
                name=name,
                file=entry["file"],
                position=position,
                state=RunState.PENDING,
                attempt=0,
                queue=plan.step_queues[name],
                entry=entry,
            )
        )
    return tasks


def _result_ref(result: StepResult) -> dict[str, Any] | None:
    if result.data is None:
        return None
    if result.data.object:
        return {"object": result.data.object, "size_bytes": result.data.size_bytes}
    return {"inline": result.data.inline or b"", "size_bytes": result.data.size_bytes}


def _log_rows(result: StepResult) -> list[dict[str, Any]]:
    rows = [line.model_dump() for line in result.logs]
    if result.logs_truncated_count:
        rows.append(
            {
                "level": "warning",
                "message": f"{result.logs_truncated_count} more log lines were dropped "
                "(per-attempt log limit).",
                "at": time.time(),
            }
        )
    return rows
