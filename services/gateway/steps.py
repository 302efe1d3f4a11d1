"""Step files: upload (checked and inspected in a sandbox), read, list, delete, run.

``POST /steps/run`` runs one step on its own (manual: Validating Your
Step). It is an ordinary run of a one-step application the gateway saves
under a name of its own, ``steprun.<step>.<8 hex>``, so the run is planned,
recorded, revocable and replayable like any other. Those applications are
left out of ``GET /applications``.
"""

from __future__ import annotations

import secrets
from typing import Any

from iscore.errors import IscoreError
from iscore.models.run import RunState
from iscore.planning import MissingParameterError, StepNotFoundError
from iscore.runtime.child_jobs import inspect_in_sandbox
from iscore.runtime.loader import check_step_source
from iscore.stores.base import StepRecord, Store
from litestar import Request, Response, delete, get, post
from litestar.params import Parameter

from services.gateway.applications import STEP_RUN_PREFIX
from services.gateway.jsonbody import read_json
from services.gateway.paging import Limit, NameFilter, Offset, matches
from services.gateway.runs import submit_run
from services.gateway.status import task_document, to_json_value

# Seconds a step's __init__ may take when its metadata is read.
INSPECT_TIME_LIMIT_S = 5.0
# MANUAL-NOTES 2 and 3: POST /steps/run waits 5 s unless told, at most 30.
DEFAULT_STEP_WAIT_S = 5.0
MAX_STEP_WAIT_S = 30.0
# Keys of a step entry that make no sense for a step run on its own.
_IGNORED_RUN_KEYS = frozenset({"output_to", "file"})
# Steps read per store page while a name filter is applied.
SCAN_PAGE = 500
# Longest step name: a step run's application name must fit in 128 characters.
MAX_STEP_NAME_CHARS = 100


class StepBodyError(IscoreError):
    code = "invalid_step"


def step_document(step: StepRecord, *, with_source: bool = True) -> dict[str, Any]:
    """A stored step version: its metadata, and with ``with_source`` its ``data``."""
    doc: dict[str, Any] = {
        "name": step.name,
        "version": step.version,
        "sha256": step.sha256,
        "created_at": step.created_at.isoformat(),
        "friendly_name": step.metadata.friendly_name,
        "description": step.metadata.description,
        "step_version": step.metadata.version,
        "parameters": [p.model_dump() for p in step.metadata.parameters],
    }
    if with_source:
        doc["data"] = step.source
    return doc


def _step_name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise StepBodyError("Field 'name' is required: the step's file name without .py.",
                            field="name")
    if len(name) > MAX_STEP_NAME_CHARS or not name.isidentifier():
        raise StepBodyError(
            f"Field 'name' must be the step class name, a Python identifier of at most "
            f"{MAX_STEP_NAME_CHARS} characters; found {name[:120]!r}.",
            field="name",
        )
    return name


@post("/steps", status_code=200)
async def upload_step(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Store a step file; each changed upload is a new version (manual: POST /steps).

    The source must compile, define a class with the file's name that
    subclasses ``BaseStep`` and has ``execute`` (400 naming the line
    otherwise). Its metadata is read by running ``__init__`` in a child
    process with a 5 s limit, never in the gateway.
    """
    body = await read_json(request)
    name, source = _step_name(body), body.get("data")
    if not isinstance(source, str) or not source.strip():
        raise StepBodyError("Field 'data' is required: the step file's Python source.",
                            field="data")
    check_step_source(source, name)
    metadata = await inspect_in_sandbox(None, source, name, time_limit_s=INSPECT_TIME_LIMIT_S)
    step = await request.app.state.store.put_step(name, source, metadata)
    return step_document(step, with_source=False)


@get("/steps")
async def list_steps(request: Request[Any, Any, Any], offset: Offset = 0,
                     limit: Limit = 100, q: NameFilter = None) -> list[dict[str, Any]]:
    """Latest version of every step by name, without sources; ``q`` filters names."""
    store: Store = request.app.state.store
    if q is None:
        steps = await store.list_steps(offset=offset, limit=limit)
        return [step_document(s, with_source=False) for s in steps]
    found: list[StepRecord] = []
    scanned = 0
    while len(found) < offset + limit:
        page = await store.list_steps(offset=scanned, limit=SCAN_PAGE)
        found.extend(s for s in page if matches(s.name, q))
        scanned += len(page)
        if len(page) < SCAN_PAGE:
            break
    return [step_document(s, with_source=False) for s in found[offset:offset + limit]]


@get("/steps/{step_name:str}")
async def get_step(
    request: Request[Any, Any, Any], step_name: str,
    version: int | None = Parameter(default=None, ge=1, le=2**31,
                                    description="An older version (default the latest)."),
) -> dict[str, Any]:
    """One step: its source (``data``), metadata and version."""
    step = await request.app.state.store.get_step(step_name, version)
    if step is None:
        raise StepNotFoundError(step_name, field="step_name")
    return step_document(step)


@delete("/steps/{step_name:str}", status_code=200)
async def delete_step(request: Request[Any, Any, Any], step_name: str) -> dict[str, Any]:
    """Delete a step; its versions stay readable for replays of old runs."""
    if not await request.app.state.store.delete_step(step_name):
        raise StepNotFoundError(step_name, field="step_name")
    return {"name": step_name, "deleted": True}


@post("/steps/run", status_code=200)
async def run_step(
    request: Request[Any, Any, Any],
    wait: float = Parameter(default=DEFAULT_STEP_WAIT_S, ge=0, le=1e9,
                            description="Seconds to wait for the step (default 5, max 30)."),
) -> Response[dict[str, Any]]:
    """Run one step on its own (manual: POST /steps/run).

    200 with the step's logs, output and result when it finished within
    ``wait``; 202 with the task id otherwise; 400 for a missing required
    parameter; 404 for an unknown step.
    """
    body = await read_json(request)
    name = _step_name(body)
    store: Store = request.app.state.store
    step = await store.get_step(name)
    if step is None:
        raise StepNotFoundError(name, field="name")
    entry = {k: v for k, v in body.items() if k not in _IGNORED_RUN_KEYS}
    entry.update(name=name, file=name)
    application = f"{STEP_RUN_PREFIX}{name}.{secrets.token_hex(4)}"
    for parameter in step.metadata.parameters:
        if parameter.required and parameter.name not in entry:
            raise MissingParameterError(name, parameter.name, application=application,
                                        field=parameter.name)

    await store.put_application(
        {"name": application, "friendly_name": f"Run of step {name}", "steps": [entry]},
        expected_version=0,
    )
    run = await submit_run(request, application, {}, min(wait, MAX_STEP_WAIT_S))
    return await _step_run_answer(store, run)


async def _step_run_answer(store: Store, run: dict[str, Any]) -> Response[dict[str, Any]]:
    steps = run.get("steps") or []
    task_id = steps[0].get("id") if steps else None
    final = run["state"] in {s.value for s in RunState if s.is_final}
    task = await store.get_step_task(task_id) if task_id else None
    if not final or task is None:
        accepted = {"id": task_id or run["id"], "task_id": task_id, "run_id": run["id"],
                    "href": f"/api/v1/tasks/{task_id or run['id']}", "state": run["state"]}
        return Response(accepted, status_code=202)
    doc = task_document(task, await store.get_logs(task.task_id))
    result = doc.get("result")
    doc["output"] = to_json_value(result.get("data")) if isinstance(result, dict) else None
    doc["run_id"] = run["id"]
    if run.get("error") and task.state is RunState.PENDING:
        doc["error"] = run["error"]
    return Response(doc, status_code=200)


ROUTES = [upload_step, list_steps, get_step, delete_step, run_step]
