"""Step files: upload (checked and inspected in a sandbox), read, list, delete."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post
from litestar.exceptions import NotFoundException

from iscore.errors import IscoreError
from iscore.runtime.loader import check_step_source
from iscore.runtime.child_jobs import inspect_in_sandbox
from iscore.stores.base import StepRecord
from services.gateway.jsonbody import read_json

# Seconds a step's __init__ may take when its metadata is read.
INSPECT_TIME_LIMIT_S = 5.0


class StepBodyError(IscoreError):
    code = "invalid_step"


def step_document(step: StepRecord, *, with_source: bool = True) -> dict[str, Any]:
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


@post("/steps", status_code=200)
async def upload_step(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Store a step file; each changed upload becomes a new version (manual: POST /steps)."""
    body = await read_json(request)
    name, source = body.get("name"), body.get("data")
    if not isinstance(name, str) or not name:
        raise StepBodyError("Field 'name' is required: the step's file name without .py.",
                            field="name")
    if not isinstance(source, str) or not source.strip():
        raise StepBodyError("Field 'data' is required: the step file's Python source.",
                            field="data")
    check_step_source(source, name)
    metadata = await inspect_in_sandbox(None, source, name, time_limit_s=INSPECT_TIME_LIMIT_S)
    step = await request.app.state.store.put_step(name, source, metadata)
    return step_document(step, with_source=False)


@get("/steps")
async def list_steps(request: Request[Any, Any, Any], offset: int = 0,
                     limit: int = 100) -> list[dict[str, Any]]:
    steps = await request.app.state.store.list_steps(offset=offset, limit=min(limit, 1000))
    return [step_document(s, with_source=False) for s in steps]


@get("/steps/{step_name:str}")
async def get_step(request: Request[Any, Any, Any], step_name: str,
                   version: int | None = None) -> dict[str, Any]:
    step = await request.app.state.store.get_step(step_name, version)
    if step is None:
        raise NotFoundException(f"Step {step_name!r} is not defined; upload it with POST /steps.")
    return step_document(step)


@delete("/steps/{step_name:str}", status_code=200)
async def delete_step(request: Request[Any, Any, Any], step_name: str) -> dict[str, Any]:
    if not await request.app.state.store.delete_step(step_name):
        raise NotFoundException(f"Step {step_name!r} is not defined.")
    return {"name": step_name, "deleted": True}


ROUTES = [upload_step, list_steps, get_step, delete_step]
