"""Revoking runs and step tasks (issue 4, revoke)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from iscore import subjects
from iscore.messages import KillTasks, RevokeRequest, encode
from iscore.models.run import RunState

from services.planner.context import ACTIVE, now

if TYPE_CHECKING:
    from services.planner.planner import Planner

log = structlog.get_logger(__name__)


class Revocation:
    """Planner behaviour for revoke requests."""

    async def revoke(self: Planner, request: RevokeRequest) -> None:
        """Revoke a run, one step task, or every unfinished run.

        Revoked ids go to the KV bucket first, so a queued task is dropped by
        whichever worker receives it, then running attempts are killed by a
        broadcast; states become REVOKED in the store, which survives any
        restart (issue 4, revoke holds across restarts).
        """
        if request.all_runs:
            for run in await self.store.unfinished_runs():
                await self._revoke_run(run.run_id, request.reason)
        elif request.target_id and request.target_id.startswith("isapp-"):
            await self._revoke_run(request.target_id, request.reason)
        elif request.target_id:
            await self._revoke_task(request.target_id, request.reason)

    async def _revoke_run(self: Planner, run_id: str, reason: str) -> None:
        ctx = await self._context(run_id)
        if ctx is None:
            return
        await self.bus.mark_revoked(run_id)
        running = [t.task_id for t in ctx.tasks.values() if t.state in ACTIVE and t.attempt > 0]
        for task in list(ctx.tasks.values()):
            if task.state.is_final:
                continue
            await self.store.update_step_task(
                task.task_id, from_states=ACTIVE, state=RunState.REVOKED, error=reason,
                finished_at=now(),
            )
            await self._refresh_task(ctx, task.task_id)
        await self._kill(running)
        log.info("run_revoked", run_id=run_id, killed_count=len(running))
        await self._finish_if_done(ctx)

    async def _revoke_task(self: Planner, task_id: str, reason: str) -> None:
        task = await self.store.get_step_task(task_id)
        if task is None or task.state.is_final:
            return
        ctx = await self._context(task.run_id)
        if ctx is None:
            return
        await self.bus.mark_revoked(task_id)
        changed = await self.store.update_step_task(
            task_id, from_states=ACTIVE, state=RunState.REVOKED, error=reason, finished_at=now()
        )
        if not changed:
            return
        await self._refresh_task(ctx, task_id)
        await self._kill([task_id])
        log.info("step_revoked", run_id=task.run_id, step=task.name, task_id=task_id)
        await self._announce(task.run_id, RunState.REVOKED, step=task.name, task_id=task_id)
        await self._skip_descendants(ctx, task.name, state=RunState.REVOKED)
        await self._finish_if_done(ctx)

    async def _kill(self: Planner, task_ids: list[str]) -> None:
        if task_ids:
            await self.bus.nc.publish(subjects.KILL_TASKS, encode(KillTasks(task_ids=task_ids)))
