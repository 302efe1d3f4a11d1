"""Domain errors to HTTP, in one place (STYLE.md, "Errors").

Every error body is ``{"code", "detail", "field"}``; never a traceback.
"""

from __future__ import annotations

from typing import Any

import structlog
from iscore.errors import IscoreError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from nats.errors import Error as NatsError

log = structlog.get_logger(__name__)

# Error codes that mean "the thing named does not exist".
NOT_FOUND_CODES = frozenset(
    {
        "application_not_found",
        "step_not_found",
        "task_not_found",
        "configuration_not_found",
        "report_not_found",
        "cache_not_found",
        "user_not_found",
        "token_not_found",
        "schedule_not_found",
    }
)
# Codes that mean a backing service is down: the caller may retry.
UNAVAILABLE_CODES = frozenset({"bus_unavailable", "store_unavailable", "child_start_failed"})
CONFLICT_CODES = frozenset({"version_conflict", "user_exists"})
RETRY_AFTER_S = "2"
# Stable codes of errors Litestar raises itself, by HTTP status.
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


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


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    field = None
    detail = exc.detail
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            field = first.get("key")
            detail = f"{field}: {first.get('message')}." if field else detail
    headers = dict(exc.headers or {})
    status = exc.status_code
    if status >= 500:
        # Litestar's own 5xx (for example a missing dependency) carry text
        # meant for developers; callers get the generic sentence.
        log.error("request_failed", path=request.url.path, status=status, detail=str(detail))
        return _server_error(status, headers)
    return Response(
        error_body(HTTP_CODES.get(status, "invalid_request"), detail, field),
        status_code=status,
        headers=headers or None,
    )


def _server_error(status: int, headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    if status == 503:
        return Response(
            error_body("service_unavailable", "A backing service is unavailable; retry later."),
            status_code=503,
            headers={**(headers or {}), "Retry-After": RETRY_AFTER_S},
        )
    return Response(
        error_body("internal_error", "The request failed on our side; it was logged."),
        status_code=500,
    )


def on_unexpected_error(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    if _is_unavailable(exc):
        log.warning("backing_service_unavailable", path=request.url.path,
                    error_type=type(exc).__name__)
        return Response(
            error_body("bus_unavailable",
                       "NATS did not answer in time; the request was not carried out. "
                       "Retry after a moment."),
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )
    log.error("request_failed", path=request.url.path, exc_info=exc)
    return _server_error(500)


def _is_unavailable(exc: BaseException) -> bool:
    """True for a NATS failure or a timeout that escaped a handler."""
    return isinstance(exc, TimeoutError | NatsError | ConnectionError)
