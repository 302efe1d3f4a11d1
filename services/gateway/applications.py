"""Integration applications: upload (validated), read, list, delete."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post
from litestar.exceptions import NotFoundException

from iscore.dag import build_dag
from iscore.models.application import Application
from iscore.stores.base import ApplicationRecord
from services.gateway.jsonbody import read_json


def application_document(record: ApplicationRecord) -> dict[str, Any]:
    return {**record.document, "_version": record.version,
            "_updated_at": record.updated_at.isoformat()}


@post("/applications", status_code=200)
async def upload_application(request: Request[Any, Any, Any],
                             expected_version: int | None = None) -> dict[str, Any]:
    """Add or replace an application (manual: POST /applications).

    ``expected_version`` refuses the write with 409 when someone else
    changed the application since it was read.
    """
    body = await read_json(request)
    body.pop("_version", None)
    body.pop("_updated_at", None)
    application = Application.from_document(body)
    build_dag(application.steps)
    record = await request.app.state.store.put_application(
        application.to_document(), expected_version=expected_version
    )
    return application_document(record)


@get("/applications")
async def list_applications(request: Request[Any, Any, Any], offset: int = 0,
                            limit: int = 100) -> list[dict[str, Any]]:
    records = await request.app.state.store.list_applications(
        offset=offset, limit=min(limit, 1000))
    return [application_document(r) for r in records]


@get("/applications/{app_name:str}")
async def get_application(request: Request[Any, Any, Any], app_name: str,
                          version: int | None = None) -> dict[str, Any]:
    record = await request.app.state.store.get_application(app_name, version)
    if record is None:
        raise NotFoundException(f"Application {app_name!r} is not defined.")
    return application_document(record)


@delete("/applications/{app_name:str}", status_code=200)
async def delete_application(request: Request[Any, Any, Any], app_name: str) -> dict[str, Any]:
    if not await request.app.state.store.delete_application(app_name):
        raise NotFoundException(f"Application {app_name!r} is not defined.")
    return {"name": app_name, "deleted": True}


ROUTES = [upload_application, list_applications, get_application, delete_application]
