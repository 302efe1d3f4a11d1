"""Domain errors to HTTP, in one place (STYLE.md, "Errors").

Every error body is ``{"code", "detail", "field"}``; never a traceback.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from iscore.errors import IscoreError

log = structlog.get_logger(__name__)

# Error codes that mean "the thing named does not exist".
NOT_FOUND_CODES = frozenset(
    {"application_not_found", "step_not_found", "task_not_found", "configuration_not_found"}
)
# Codes that mean a backing service is down: the caller may retry.
UNAVAILABLE_CODES = frozenset({"bus_unavailable", "store_unavailable", "child_start_failed"})
CONFLICT_CODES = frozenset({"version_conflict"})
RETRY_AFTER_S = "2"


def status_for(code: str) -> int:
    if code in NOT_FOUND_CODES:
        return 404
    if code in UNAVAILABLE_CODES:
        return 503
    if code in CONFLICT_CODES:
        return 409
    return 400


def error_body(code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    return {"code": code, "detail": detail, "field": field}


def on_domain_error(_: Request[Any, Any, Any], exc: IscoreError) -> Response[dict[str, Any]]:
    status = status_for(exc.code)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return Response(error_body(exc.code, str(exc), exc.field), status_code=status, headers=headers)


def on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    field = None
    detail = exc.detail
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            field = first.get("key")
            detail = f"{field}: {first.get('message')}." if field else detail
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    headers = dict(exc.headers or {})
    return Response(
        error_body(code.get(exc.status_code, "invalid_request"), detail, field),
        status_code=exc.status_code,
        headers=headers or None,
    )


def on_unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("request_failed", path=request.url.path, exc_info=exc)
    return Response(
        error_body("internal_error", "The request failed on our side; it was logged."),
        status_code=500,
    )
