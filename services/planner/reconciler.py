"""Re-deriving what crashes or lost messages left undone (ARCHITECTURE.md)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog
from iscore import subjects
from iscore.messages import RetryDue
from iscore.models.run import RunState

from services.planner.context import now

if TYPE_CHECKING:
    from services.planner.planner import Planner

log = structlog.get_logger(__name__)


class Reconciliation:
    """Planner behaviour after restarts and for lost step tasks."""

    async def reconcile_run(self: Planner, run_id: str) -> None:
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
            elif task.state is RunState.RETRY and task.next_attempt_at is not None:
                due = RetryDue(
                    task_id=task.task_id,
                    run_id=task.run_id,
                    attempt=task.attempt,
                    due_at=task.next_attempt_at.timestamp(),
                )
                await self.bus.publish(
                    subjects.RETRY_DUE, due, msg_id=f"retry:{task.task_id}:{task.attempt}"
                )
            elif task.state in (RunState.FAILURE, RunState.REVOKED):
                await self._skip_descendants(ctx, name, state=task.state)
        await self._finish_if_done(ctx)

    async def reconcile_lost(self: Planner, *, older_than_s: float) -> int:
        """Re-publish claimed tasks whose message JetStream no longer holds.

        A task dispatched more than ``older_than_s`` ago that no worker has
        started, on a queue whose subject has no message left in the tasks
        stream, was lost (purged, or a crash between claim and publish beyond
        the duplicate window). It is published again under a fresh message id;
        should the original still turn up, the attempt fence keeps one result.
        """
        counts = await self._queued_counts()
        cutoff = now().timestamp() - older_than_s
        republished = 0
        for run in await self.store.unfinished_runs():
            ctx = await self._context(run.run_id)
            if ctx is None:
                continue
            for task in list(ctx.tasks.values()):
                stale = (
                    task.state is RunState.PENDING
                    and task.attempt > 0
                    and task.dispatched_at is not None
                    and task.dispatched_at.timestamp() < cutoff
                )
                if not stale or counts.get(subjects.task_subject(task.queue), 0) > 0:
                    continue
                log.warning("lost_task_republished", run_id=run.run_id, task_id=task.task_id,
                            step=task.name, queue=task.queue)
                await self.store.update_step_task(task.task_id, from_states={RunState.PENDING},
                                                  expected_attempt=task.attempt,
                                                  dispatched_at=now())
                await self._publish_task(ctx, await self._refresh_task(ctx, task.task_id),
                                         msg_id_suffix=f":re{int(time.time())}")
                republished += 1
        return republished

    async def _queued_counts(self: Planner) -> dict[str, int]:
        info = await self.bus.js.stream_info(
            subjects.TASKS_STREAM, subjects_filter=f"{subjects.TASK_PREFIX}.*"
        )
        return dict(info.state.subjects or {})

    async def reconcile_all(self: Planner) -> int:
        runs = await self.store.unfinished_runs()
        for run in runs:
            await self.reconcile_run(run.run_id)
        return len(runs)
