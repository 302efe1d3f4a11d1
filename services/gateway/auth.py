"""HTTP basic authentication for the administrator account ``isadmin``.

Only the health check answers without credentials (MANUAL-NOTES 5).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

ADMIN_USER = "isadmin"
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Integration Service"'}


def _credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuthMiddleware(AbstractAuthenticationMiddleware):
    """Admits requests carrying the administrator's basic credentials."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        expected: str = connection.app.state.admin_password
        given = _credentials(connection.headers.get("authorization", ""))
        if given is None:
            raise NotAuthorizedException(
                "Credentials are required: send HTTP basic auth for user 'isadmin'.",
                headers=CHALLENGE,
            )
        user, password = given
        ok_user = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
        ok_password = hmac.compare_digest(password.encode(), expected.encode())
        if not (ok_user and ok_password):
            raise NotAuthorizedException("User name or password is wrong.", headers=CHALLENGE)
        return AuthenticationResult(user=user, auth="basic")
