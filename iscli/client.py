"""The gateway's HTTP API as iscli uses it: one client, errors translated.

iscli talks to nothing but this API. Every error answer becomes an
``ApiError`` carrying the server's ``code`` and ``detail`` (the gateway's
error body, see services/gateway/errors.py) plus a hint for the next move.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from iscli.connection import Connection
from iscli.errors import ApiError, GatewayUnreachableError

# Seconds to wait for the gateway to answer one request. Runs started with
# the server-side `wait` can hold a request for up to 30 s (MANUAL-NOTES 3).
REQUEST_TIMEOUT_S = 60.0
# Details Litestar gives when no route matches: the endpoint itself is missing.
MISSING_ROUTE_DETAILS = frozenset({"Not Found", "Method Not Allowed"})


class GatewayClient:
    """HTTP client of one gateway; use as a context manager to close it."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        headers = {"Authorization": f"Bearer {connection.token}"} if connection.token else None
        auth = None if connection.token else (connection.user, connection.password or "")
        self._http = httpx.Client(
            base_url=connection.base_url,
            auth=auth,
            headers=headers,
            verify=connection.verify,
            timeout=REQUEST_TIMEOUT_S,
        )

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` under /api/v1 and return the decoded JSON answer."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST ``body`` as JSON to ``path`` and return the decoded JSON answer."""
        return self.request("POST", path, body=body, params=params)

    def delete(self, path: str, **params: Any) -> Any:
        """DELETE ``path`` and return the decoded JSON answer."""
        return self.request("DELETE", path, params=params)

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """Send one request; raises ``ApiError`` or ``GatewayUnreachableError``."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            reply = self._http.request(method, path, json=body, params=query)
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
        if reply.is_error:
            raise _api_error(method, path, reply, self.connection)
        if not reply.content:
            return None
        try:
            return reply.json()
        except ValueError as err:
            raise ApiError(
                f"The gateway answered {method} {path} with a body that is not JSON.",
                status=reply.status_code,
                code="invalid_answer",
                field=None,
                hint=f"Check that {self.connection.base_url} is an Integration Service API.",
            ) from err

    def _unreachable(self, err: httpx.TransportError) -> GatewayUnreachableError:
        url = self.connection.base_url
        reason = str(err) or type(err).__name__
        return GatewayUnreachableError(
            f"The gateway at {url} cannot be reached: {reason}.",
            url=url,
            hint="Start it with `make up`, or point iscli at it with -H/-P, "
            "ISCLI_HOST/ISCLI_PORT or the config file.",
        )


def _api_error(method: str, path: str, reply: httpx.Response, connection: Connection) -> ApiError:
    code, detail, field = _error_body(reply)
    status = reply.status_code
    if status in (404, 405) and detail in MISSING_ROUTE_DETAILS:
        return ApiError(
            f"The gateway at {connection.base_url} does not offer {method} {path} (HTTP {status}).",
            status=status,
            code="endpoint_missing",
            field=None,
            hint="This gateway predates the feature; upgrade it or use another command.",
        )
    message = f"{detail.rstrip().rstrip('.')} (HTTP {status} {code})."
    return ApiError(
        message, status=status, code=code, field=field, hint=_hint(status, reply, connection)
    )


def _error_body(reply: httpx.Response) -> tuple[str, str, str | None]:
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        field = body.get("field")
        return str(body.get("code") or "error"), body["detail"], field if field else None
    text = reply.text.strip().splitlines()[0] if reply.text.strip() else reply.reason_phrase
    return "error", text, None


def _hint(status: int, reply: httpx.Response, connection: Connection) -> str | None:
    if status == 401 and connection.token:
        return "Check the API token (--token, ISCLI_TOKEN or the config file's token)."
    if status == 401:
        return (
            f"Check the password of user {connection.user!r}: pass -U/-p, set "
            "ISCLI_USER/ISCLI_PASSWORD, or put them in the config file."
        )
    if status == 403:
        return f"User {connection.user!r} may not do this; use an account that may."
    if status == 503:
        after = reply.headers.get("Retry-After", "a few")
        return f"A backing service (NATS or the store) is down; retry in {after} seconds."
    if status >= 500:
        return "The failure is on the server side; the gateway logged it."
    return None
