"""Who is calling, and may they: HTTP basic, bearer API tokens and roles.

Every request but the health check carries credentials (MANUAL-NOTES 5):
HTTP basic (what ``iscli -U/-p`` sends) or ``Authorization: Bearer
ist_...``. ``ROUTE_ROLES`` is the permission table of ``docs/api.md``: the
least role each route needs. A route missing from it needs ``viewer`` for
GET and ``admin`` for anything else, so a new route is closed until
someone decides who may call it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from iscore.accounts import ADMIN_USER, Role, UserRecord, parse_token, token_matches
from iscore.accounts import verify_password as argon2_verify
from iscore.stores.base import Store
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

log = structlog.get_logger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Basic realm="Integration Service"'}
API_PREFIX = "/api/v1"
# Verified (user, password) pairs kept in memory so a client sending basic
# auth on every request does not pay Argon2 each time; entries are tied to
# the stored hash, so a password change invalidates them.
VERIFIED_CACHE_SIZE = 1024

V, OP, E, A = Role.VIEWER, Role.OPERATOR, Role.EDITOR, Role.ADMIN
# Least role per route: "METHOD path" with path parameters written "{}".
ROUTE_ROLES: dict[str, Role] = {
    "GET /health": V,
    # Applications
    "GET /applications": V,
    "GET /applications/{}": V,
    "GET /applications/{}/logs": V,
    "POST /applications": E,
    "DELETE /applications/{}": E,
    "POST /applications/run": OP,
    "POST /applications/{}/run": OP,
    # Steps
    "GET /steps": V,
    "GET /steps/{}": V,
    "POST /steps": E,
    "DELETE /steps/{}": E,
    "POST /steps/run": OP,
    # Configurations
    "GET /configurations": V,
    "GET /configurations/{}": V,
    "POST /configurations": E,
    "DELETE /configurations/{}": E,
    # Schedules
    "GET /schedule": V,
    "GET /schedule/{}": V,
    "POST /schedule": E,
    "PUT /schedule/{}": E,
    "DELETE /schedule": E,
    "DELETE /schedule/{}": E,
    # Tasks and runs
    "GET /tasks": V,
    "GET /tasks/{}": V,
    "POST /tasks/{}/revoke": OP,
    "POST /tasks/{}/replay": OP,
    "DELETE /tasks": OP,
    "DELETE /tasks/{}": OP,
    # Reports and cache
    "GET /reports": V,
    "GET /reports/{}": V,
    "DELETE /reports": E,
    "DELETE /reports/{}": E,
    "GET /cache/{}": V,
    "DELETE /cache/{}": E,
    # Accounts: everyone manages their own tokens and password.
    "GET /whoami": V,
    "GET /tokens": V,
    "POST /tokens": V,
    "DELETE /tokens/{}": V,
    "GET /users": A,
    "GET /users/{}": A,
    "POST /users": A,
    "PUT /users/{}": V,
    "DELETE /users/{}": A,
}

_PARAMETER = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a user name and role."""

    name: str
    role: Role


def route_key(method: str, path_template: str) -> str:
    """``"GET /steps/{}"`` for a method and a matched route's path template."""
    path = path_template.removeprefix(API_PREFIX) or "/"
    return f"{method.upper()} {_PARAMETER.sub('{}', path)}"


def role_needed(method: str, path_template: str) -> Role:
    """The least role that may call a route (``ROUTE_ROLES``, else the default)."""
    key = route_key(method, path_template)
    if key in ROUTE_ROLES:
        return ROUTE_ROLES[key]
    return Role.VIEWER if method.upper() in ("GET", "HEAD") else Role.ADMIN


def require_role(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard: refuse with 403 a caller whose role is below the route's."""
    if handler.opt.get("exclude_from_auth"):
        return
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("Credentials are required.", headers=CHALLENGE)
    template = str(connection.scope.get("path_template") or connection.scope["path"])
    needed = role_needed(connection.scope["method"], template)
    if not principal.role.allows(needed):
        raise PermissionDeniedException(
            f"User {principal.name!r} has role {principal.role.value!r}; "
            f"{route_key(connection.scope['method'], template)} needs role "
            f"{needed.value!r} or higher. Ask an administrator for that role."
        )


class CredentialCache:
    """Remembers which password hashed to which stored hash, per user."""

    def __init__(self, size: int = VERIFIED_CACHE_SIZE) -> None:
        self._size = size
        self._salt = secrets.token_bytes(16)
        self._verified: dict[tuple[str, str], str] = {}

    def _key(self, user: str, password: str) -> tuple[str, str]:
        digest = hmac.new(self._salt, password.encode(), hashlib.sha256).hexdigest()
        return user, digest

    async def verify(self, record: UserRecord, password: str) -> bool:
        key = self._key(record.name, password)
        if self._verified.get(key) == record.password_hash:
            return True
        # Argon2 is CPU-bound for tens of milliseconds: keep the loop free.
        if not await asyncio.to_thread(argon2_verify, record.password_hash, password):
            return False
        if len(self._verified) >= self._size:
            self._verified.pop(next(iter(self._verified)))
        self._verified[key] = record.password_hash
        return True


def _basic_credentials(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail, headers=CHALLENGE)


class AuthMiddleware(AbstractAuthenticationMiddleware):
    """Authenticates HTTP basic and bearer-token requests against the store."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        store: Store = connection.app.state.store
        if scheme.lower() == "basic" and value:
            principal = await self._basic(store, connection.app.state.credentials, value.strip())
            return AuthenticationResult(user=principal, auth="basic")
        if scheme.lower() == "bearer" and value:
            return AuthenticationResult(user=await self._bearer(store, value.strip()),
                                        auth="bearer")
        raise _unauthorized(
            f"Credentials are required: send HTTP basic auth (user {ADMIN_USER!r} at first) "
            "or an API token as 'Authorization: Bearer ist_...'."
        )

    @staticmethod
    async def _basic(store: Store, credentials: CredentialCache, value: str) -> Principal:
        given = _basic_credentials(value)
        if given is None:
            raise _unauthorized("The basic credentials are not base64 'user:password' text.")
        user, password = given
        record = await store.get_user(user) if len(user) <= 64 else None
        if record is None or not await credentials.verify(record, password):
            log.info("authentication_failed", user=user[:64], scheme="basic")
            raise _unauthorized("User name or password is wrong.")
        return Principal(record.name, record.role)

    @staticmethod
    async def _bearer(store: Store, value: str) -> Principal:
        parsed = parse_token(value)
        token = await store.get_token(parsed[0]) if parsed is not None else None
        if parsed is None or token is None or not token_matches(token, parsed[1]):
            log.info("authentication_failed", scheme="bearer")
            raise _unauthorized("The API token is unknown or revoked; create one with "
                                "POST /api/v1/tokens.")
        record = await store.get_user(token.user)
        if record is None:
            raise _unauthorized("The API token's user no longer exists.")
        return Principal(record.name, record.role)
