"""Reports of applications run with ``generate_report`` (manual: Reports)."""

from __future__ import annotations

from typing import Any

from iscore.reports import ReportNotFoundError, ReportRecord
from iscore.stores.base import Store
from litestar import Request, delete, get
from litestar.params import Parameter

from services.gateway.jsonbody import InvalidBodyError
from services.gateway.paging import Limit, Offset

ApplicationFilter = Parameter(default=None, min_length=1, max_length=128,
                              description="Only reports of this application.")


def report_document(report: ReportRecord, *, with_rows: bool) -> dict[str, Any]:
    """A report's header, and with ``with_rows`` its rows."""
    doc: dict[str, Any] = {
        "id": report.report_id,
        "href": f"/api/v1/reports/{report.report_id}",
        "application": report.application,
        "run_id": report.run_id,
        "run_href": f"/api/v1/tasks/{report.run_id}",
        "created_at": report.created_at.isoformat(),
        "updated_at": report.updated_at.isoformat(),
        "row_count": report.row_count,
    }
    if with_rows:
        doc["rows"] = report.rows
    return doc


@get("/reports")
async def list_reports(request: Request[Any, Any, Any], offset: Offset = 0, limit: Limit = 100,
                       application: str | None = ApplicationFilter) -> list[dict[str, Any]]:
    """Reports newest first, without rows; ``application`` filters."""
    store: Store = request.app.state.store
    reports = await store.list_reports(application=application, offset=offset, limit=limit)
    return [report_document(r, with_rows=False) for r in reports]


@get("/reports/{report_id:str}")
async def get_report(request: Request[Any, Any, Any], report_id: str) -> dict[str, Any]:
    """One report with its rows."""
    report = await request.app.state.store.get_report(report_id)
    if report is None:
        raise ReportNotFoundError(report_id)
    return report_document(report, with_rows=True)


@delete("/reports/{report_id:str}", status_code=200)
async def delete_report(request: Request[Any, Any, Any], report_id: str) -> dict[str, Any]:
    """Delete one report."""
    if not await request.app.state.store.delete_report(report_id):
        raise ReportNotFoundError(report_id)
    return {"id": report_id, "deleted": True}


@delete("/reports", status_code=200)
async def delete_reports(request: Request[Any, Any, Any],
                         application: str | None = ApplicationFilter) -> dict[str, Any]:
    """Delete every report of ``application`` (MANUAL-NOTES 4)."""
    if application is None:
        raise InvalidBodyError(
            "Query parameter 'application' is required: DELETE /reports?application=<name> "
            "deletes that application's reports.",
            field="application",
        )
    count = await request.app.state.store.delete_reports(application)
    return {"application": application, "deleted_count": count}


ROUTES = [list_reports, get_report, delete_report, delete_reports]
