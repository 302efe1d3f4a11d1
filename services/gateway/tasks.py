"""Task control: revoke, terminate and replay runs and step tasks.

The planner applies these (it is the only writer of run state); the
gateway publishes the request to JetStream and waits briefly for the
planner's event so the answer shows the new state.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, delete, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from iscore import subjects
from iscore.messages import RevokeRequest, RunRequest, TriggeredBy
from iscore.models.run import RunRecord
from iscore.stores.base import Store
from services.gateway.runs import MAX_WAIT_S, publish_and_wait
from services.gateway.status import run_document, task_document

# Seconds a revoke waits for the planner to confirm before answering.
REVOKE_WAIT_S = 5.0


async def _run_of(store: Store, task_id: str) -> RunRecord:
    run_id = task_id
    if not task_id.startswith("isapp-"):
        task = await store.get_step_task(task_id)
        if task is None:
            raise NotFoundException(f"Task {task_id!r} is not known (or has expired).")
        run_id = task.run_id
    run = await store.get_run(run_id)
    if run is None:
        raise NotFoundException(f"Run {run_id!r} is not known (or has expired).")
    return run


async def _document(store: Store, task_id: str) -> dict[str, Any]:
    if task_id.startswith("isapp-"):
        run = await _run_of(store, task_id)
        return run_document(run, await store.list_step_tasks(run.run_id))
    task = await store.get_step_task(task_id)
    if task is None:
        raise NotFoundException(f"Task {task_id!r} is not known (or has expired).")
    return task_document(task, await store.get_logs(task_id))


async def _revoke(request: Request[Any, Any, Any], task_id: str) -> dict[str, Any]:
    store: Store = request.app.state.store
    run = await _run_of(store, task_id)
    if not run.state.is_final:
        message = RevokeRequest(target_id=task_id)
        await publish_and_wait(
            request.app.state.bus, subjects.REVOKE_REQUEST, message, run_id=run.run_id,
            msg_id=f"revoke:{task_id}", wait=REVOKE_WAIT_S, until=frozenset({"REVOKED"}),
        )
    return await _document(store, task_id)


@post("/tasks/{task_id:str}/revoke", status_code=200)
async def revoke_task(request: Request[Any, Any, Any], task_id: str) -> dict[str, Any]:
    """Revoke a run (``isapp-`` id) or one step task; running steps are killed."""
    return await _revoke(request, task_id)


@delete("/tasks/{task_id:str}", status_code=200)
async def terminate_task(request: Request[Any, Any, Any], task_id: str) -> dict[str, Any]:
    """Terminate one running task or run (MANUAL-NOTES 4); same as revoke."""
    return await _revoke(request, task_id)


@delete("/tasks", status_code=200)
async def terminate_all(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Terminate every unfinished run."""
    store: Store = request.app.state.store
    unfinished = [run.run_id for run in await store.unfinished_runs()]
    await request.app.state.bus.publish(
        subjects.REVOKE_REQUEST, RevokeRequest(all_runs=True, reason="Terminated by request.")
    )
    return {"revoked_run_ids": unfinished, "revoked_run_count": len(unfinished)}


@post("/tasks/{task_id:str}/replay", status_code=200)
async def replay_task(
    request: Request[Any, Any, Any],
    task_id: str,
    wait: float | None = Parameter(default=None, ge=0, description="Seconds to wait (max 30)."),
) -> dict[str, Any]:
    """Start a new run like the one of ``task_id``: same versions, variables,
    configuration snapshot and queue. The original run is left untouched."""
    store: Store = request.app.state.store
    original = await _run_of(store, task_id)
    run_id = f"isapp-{uuid.uuid4()}"
    message = RunRequest(
        application=original.application,
        params=original.params,
        run_id=run_id,
        replay_of=original.run_id,
        triggered_by=[TriggeredBy(application_id=run_id, triggered_by="REPLAY")],
    )
    await publish_and_wait(request.app.state.bus, subjects.RUN_REQUEST, message,
                           run_id=run_id, msg_id=run_id, wait=min(wait or 0.0, MAX_WAIT_S))
    run = await store.get_run(run_id)
    if run is None:
        return {"id": run_id, "href": f"/api/v1/tasks/{run_id}", "state": "PENDING",
                "app_name": original.application, "replay_of": original.run_id}
    return run_document(run, await store.list_step_tasks(run_id))


ROUTES = [revoke_task, terminate_task, terminate_all, replay_task]
