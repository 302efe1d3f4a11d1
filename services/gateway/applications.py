"""Integration applications: upload (validated), read, list, delete."""

from __future__ import annotations

from typing import Any

from iscore.dag import build_dag
from iscore.models.application import Application
from iscore.preparation import ApplicationMissingError
from iscore.stores.base import ApplicationRecord, Store
from litestar import Request, delete, get, post
from litestar.params import Parameter

from services.gateway.jsonbody import InvalidBodyError, read_json
from services.gateway.paging import Limit, NameFilter, Offset, matches

# Names of the one-step applications POST /steps/run saves (see steps.py).
STEP_RUN_PREFIX = "steprun."

# Applications read per store page while listing.
SCAN_PAGE = 500


def application_document(record: ApplicationRecord) -> dict[str, Any]:
    """The stored document plus ``_version`` and ``_updated_at``."""
    return {**record.document, "_version": record.version,
            "_updated_at": record.updated_at.isoformat()}


def _expected_version(body: dict[str, Any], query: int | None) -> int | None:
    """The version the writer last read: the query, else ``_version`` in the body.

    A document fetched with GET carries ``_version``; sending it back as it
    was makes the upload refuse (409) if someone else saved in between.
    """
    in_body = body.pop("_version", None)
    body.pop("_updated_at", None)
    if query is not None:
        return query
    if in_body is None:
        return None
    if isinstance(in_body, bool) or not isinstance(in_body, int) or in_body < 0:
        raise InvalidBodyError(
            f"Field '_version' must be the whole number GET returned, found {in_body!r}.",
            field="_version",
        )
    return in_body


@post("/applications", status_code=200)
async def upload_application(
    request: Request[Any, Any, Any],
    expected_version: int | None = Parameter(
        default=None, ge=0, le=2**31,
        description="Refuse with 409 unless the stored version is this (0: must not exist).",
    ),
) -> dict[str, Any]:
    """Add or replace an application (manual: POST /applications).

    ``expected_version`` (or the ``_version`` a GET returned, sent back in
    the body) refuses the write with 409 when someone else changed the
    application since it was read.
    """
    body = await read_json(request)
    expected = _expected_version(body, expected_version)
    application = Application.from_document(body)
    build_dag(application.steps)
    record = await request.app.state.store.put_application(
        application.to_document(), expected_version=expected
    )
    return application_document(record)


@get("/applications")
async def list_applications(request: Request[Any, Any, Any], offset: Offset = 0,
                            limit: Limit = 100, q: NameFilter = None) -> list[dict[str, Any]]:
    """Applications by name, ``limit`` from ``offset``; ``q`` filters names.

    The one-step applications ``POST /steps/run`` saves are left out.
    """
    store: Store = request.app.state.store
    found: list[ApplicationRecord] = []
    scanned = 0
    while len(found) < offset + limit:
        page = await store.list_applications(offset=scanned, limit=SCAN_PAGE)
        found.extend(r for r in page
                     if matches(r.name, q) and not r.name.startswith(STEP_RUN_PREFIX))
        scanned += len(page)
        if len(page) < SCAN_PAGE:
            break
    return [application_document(r) for r in found[offset:offset + limit]]


@get("/applications/{app_name:str}")
async def get_application(
    request: Request[Any, Any, Any], app_name: str,
    version: int | None = Parameter(default=None, ge=1, le=2**31,
                                    description="An older version (default the latest)."),
) -> dict[str, Any]:
    """One application, its latest version or ``version``."""
    record = await request.app.state.store.get_application(app_name, version)
    if record is None:
        raise ApplicationMissingError(app_name)
    return application_document(record)


@delete("/applications/{app_name:str}", status_code=200)
async def delete_application(request: Request[Any, Any, Any], app_name: str) -> dict[str, Any]:
    """Delete an application; its versions stay readable for replays."""
    if not await request.app.state.store.delete_application(app_name):
        raise ApplicationMissingError(app_name)
    return {"name": app_name, "deleted": True}


ROUTES = [upload_application, list_applications, get_application, delete_application]
