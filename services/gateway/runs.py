"""Starting runs and reading their status (MANUAL-NOTES 2, 3, 6-9)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from opentelemetry import trace

from iscore import subjects
from iscore.bus import Bus, BusUnavailableError
from iscore.errors import IscoreError
from iscore.messages import MessageInvalidError, RunEvent, RunRequest, decode
from iscore.models.run import RunState
from iscore.preparation import prepare_run
from iscore.stores.base import Store
from services.gateway.jsonbody import read_json
from services.gateway.status import pending_document, run_document, task_document

tracer = trace.get_tracer("is.gateway")

# MANUAL-NOTES 3: ``wait`` is in seconds, capped at 30.
MAX_WAIT_S = 30.0
FINAL_STATES = frozenset(s.value for s in RunState if s.is_final)


class RunBodyError(IscoreError):
    code = "invalid_run_request"


def _params(body: dict[str, Any]) -> dict[str, Any]:
    params = body.get("params", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RunBodyError(
            f"Field 'params' must be a JSON object, found {type(params).__name__}.",
            field="params",
        )
    return params


async def submit_run(request: Request[Any, Any, Any], name: str, params: dict[str, Any],
                     wait: float) -> dict[str, Any]:
    store: Store = request.app.state.store
    prepared = await prepare_run(store, name, params)
    run_id = f"isapp-{uuid.uuid4()}"
    message = RunRequest(application=name, params=params, run_id=run_id)
    await publish_and_wait(request.app.state.bus, subjects.RUN_REQUEST, message,
                           run_id=run_id, msg_id=run_id, wait=wait)
    run = await store.get_run(run_id)
    if run is None:
        return pending_document(run_id, name, prepared.plan.app_variables,
                                list(prepared.plan.dag.names), prepared.plan.queue)
    return run_document(run, await store.list_step_tasks(run_id))


async def publish_and_wait(bus: Bus, subject: str, message: Any, *, run_id: str, msg_id: str,
                           wait: float, until: frozenset[str] = frozenset()) -> None:
    """Publish to JetStream, then wait up to ``wait`` s for the run to end.

    Subscribes to the run's events before publishing, so no event is missed.
    ``until`` adds step-level states that also end the wait (a revoke).
    """
    events = await bus.nc.subscribe(subjects.run_event_subject(run_id)) if wait > 0 else None
    try:
        with tracer.start_as_current_span("submit run", attributes={"run_id": run_id}):
            try:
                await bus.publish(subject, message, msg_id=msg_id)
            except Exception as err:  # any NATS failure means "not accepted".  # noqa: BLE001
                raise BusUnavailableError(
                    f"The request was not accepted: NATS did not store it ({err})."
                ) from err
        if events is not None:
            await _wait_until_final(events, min(wait, MAX_WAIT_S), until)
    finally:
        if events is not None:
            with contextlib.suppress(Exception):
                await events.unsubscribe()


async def _wait_until_final(events: Any, timeout_s: float, until: frozenset[str]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (remaining := deadline - loop.time()) > 0:
        try:
            msg = await events.next_msg(timeout=remaining)
        except Exception:  # nats-py raises its TimeoutError at the deadline.  # noqa: BLE001
            return
        with contextlib.suppress(MessageInvalidError):
            event = decode(msg.data, RunEvent)
            if event.step is None and event.task_id is None and event.state in FINAL_STATES:
                return
            if event.state in until:
                return


def _wait(value: float | None) -> float:
    return max(0.0, min(value or 0.0, MAX_WAIT_S))


@post("/applications/run", status_code=200)
async def run_application(
    request: Request[Any, Any, Any],
    wait: float | None = Parameter(default=None, ge=0, description="Seconds to wait (max 30)."),
) -> dict[str, Any]:
    """Run the application named in the body (manual: POST /applications/run)."""
    body = await read_json(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise RunBodyError("Field 'name' is required: the application to run.", field="name")
    return await submit_run(request, name, _params(body), _wait(wait))


@post("/applications/{app_name:str}/run", status_code=200)
async def run_named_application(
    request: Request[Any, Any, Any],
    app_name: str,
    wait: float | None = Parameter(default=None, ge=0, description="Seconds to wait (max 30)."),
) -> dict[str, Any]:
    """Run ``app_name`` (manual: POST /applications/{appName}/run)."""
    raw = await request.body()
    body = await read_json(request) if raw.strip() else {}
    return await submit_run(request, app_name, _params(body), _wait(wait))


@get("/applications/{app_name:str}/logs")
async def application_logs(request: Request[Any, Any, Any], app_name: str) -> dict[str, Any]:
    """The latest run's status document plus ``last_run`` (MANUAL-NOTES 8)."""
    store: Store = request.app.state.store
    run = await store.latest_run(app_name)
    if run is None:
        if await store.get_application(app_name) is None:
            raise NotFoundException(f"Application {app_name!r} is not defined.")
        raise NotFoundException(f"Application {app_name!r} has not run yet.")
    doc = run_document(run, await store.list_step_tasks(run.run_id))
    doc["last_run"] = {"id": run.run_id, "href": doc["href"], "state": run.state.value}
    return doc


@get("/tasks/{task_id:str}")
async def get_task(request: Request[Any, Any, Any], task_id: str) -> dict[str, Any]:
    """A whole run for an ``isapp-`` id, else one step task with its logs."""
    store: Store = request.app.state.store
    if task_id.startswith("isapp-"):
        run = await store.get_run(task_id)
        if run is None:
            raise NotFoundException(f"Run {task_id!r} is not known (or has expired).")
        return run_document(run, await store.list_step_tasks(task_id))
    task = await store.get_step_task(task_id)
    if task is None:
        raise NotFoundException(f"Task {task_id!r} is not known (or has expired).")
    return task_document(task, await store.get_logs(task_id))


ROUTES = [run_application, run_named_application, application_logs, get_task]
