"""Trigger steps, run by the planner itself (iscore.trigger, MANUAL-NOTES 20).

A blocking trigger step waits as a record: the child run's end completes
it, so no worker slot is held while a child runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from iscore import codec, subjects
from iscore.errors import IscoreError
from iscore.messages import RunRequest, TriggeredBy
from iscore.models.run import RunRecord, RunState, StepTaskRecord
from iscore.trigger import child_run_id, trigger_request

from services.planner.context import ACTIVE, RunContext, now

if TYPE_CHECKING:
    from services.planner.planner import Planner

log = structlog.get_logger(__name__)


class TriggerSteps:
    """Planner behaviour for ``TriggerApplication`` steps."""

    async def _start_child(self: Planner, ctx: RunContext, task: StepTaskRecord) -> None:
        """Run a trigger step: request the child run (iscore.trigger)."""
        try:
            application, params, blocking = trigger_request(task.entry, ctx.run.app_variables)
        except IscoreError as err:
            await self._complete_native(ctx, task, RunState.FAILURE, error=str(err))
            return
        child_id = child_run_id(task.task_id, task.attempt)
        await self.store.update_step_task(
            task.task_id,
            from_states={RunState.PENDING},
            expected_attempt=task.attempt,
            state=RunState.STARTED,
            started_at=now(),
            worker="planner",
        )
        parent = TriggeredBy(
            application_id=ctx.run.run_id,
            triggered_by="APPLICATION",
            step=task.name,
            task_id=task.task_id,
            blocking=blocking,
        )
        request = RunRequest(
            application=application, params=params, run_id=child_id, triggered_by=[parent]
        )
        await self.bus.publish(subjects.RUN_REQUEST, request, msg_id=child_id)
        log.info("child_run_requested", run_id=ctx.run.run_id, step=task.name,
                 child_run_id=child_id, blocking=blocking)
        task = await self._refresh_task(ctx, task.task_id)
        if not blocking:
            await self._complete_native(
                ctx, task, RunState.SUCCESS, data={"run_id": child_id, "state": "PENDING"}
            )
            return
        child = await self.store.get_run(child_id)
        if child is not None and child.state.is_final:
            # Recovery: the child ended while nobody was there to hear it.
            await self._notify_parent(child, child.state)

    async def _notify_parent(self: Planner, run: RunRecord, final: RunState) -> None:
        """Finish the blocking trigger step that waits for ``run``."""
        for entry in run.triggered_by:
            task_id = entry.get("task_id")
            if not entry.get("blocking") or not task_id:
                continue
            parent = await self.store.get_step_task(task_id)
            if parent is None or parent.state.is_final:
                continue
            ctx = await self._context(parent.run_id)
            if ctx is None:
                continue
            state = RunState.SUCCESS if final is RunState.SUCCESS else RunState.FAILURE
            error = None
            if state is RunState.FAILURE:
                error = (f"Triggered run {run.run_id!r} of application {run.application!r} "
                         f"ended {final.value}.")
            data = {"run_id": run.run_id, "state": final.value}
            await self._complete_native(ctx, parent, state, data=data, error=error)

    async def _complete_native(
        self: Planner,
        ctx: RunContext,
        task: StepTaskRecord,
        state: RunState,
        *,
        data: Any = None,
        error: str | None = None,
    ) -> None:
        """Finish a step the planner ran itself, as a worker result would."""
        ref = None
        if data is not None:
            encoded = codec.encode(data)
            ref = {"inline": encoded, "size_bytes": len(encoded)}
        accepted = await self.store.update_step_task(
            task.task_id,
            from_states=ACTIVE,
            expected_attempt=task.attempt,
            state=state,
            result=ref,
            has_data=data is not None,
            error=error,
            finished_at=now(),
        )
        if accepted:
            task = await self._refresh_task(ctx, task.task_id)
            await self._after_final(ctx, task, state)
