"""Users, roles and API tokens (``/users``, ``/tokens``, ``/whoami``).

Administrators manage users; every user changes their own password and
creates, lists and revokes their own API tokens. A token acts with its
user's current role and is shown once, when it is created.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from iscore.accounts import (
    ADMIN_USER,
    AccountError,
    Role,
    TokenNotFoundError,
    TokenRecord,
    UserExistsError,
    UserNotFoundError,
    UserRecord,
    check_password,
    check_user_name,
    hash_password,
    new_token,
    to_role,
    verify_password,
)
from iscore.stores.base import Store
from litestar import Request, delete, get, post, put
from litestar.exceptions import PermissionDeniedException
from litestar.params import Parameter

from services.gateway.auth import Principal
from services.gateway.jsonbody import read_json
from services.gateway.paging import Limit, Offset

log = structlog.get_logger(__name__)

# Longest label of an API token, in characters.
MAX_LABEL_CHARS = 200


async def ensure_admin(store: Store, password: str, *, authoritative: bool) -> None:
    """Create ``isadmin`` with ``password`` on first start.

    With ``authoritative`` (``IS_ADMIN_PASSWORD`` is set) an existing
    ``isadmin`` whose password differs gets this one: the variable is also
    the way back in when the password is lost.
    """
    existing = await store.get_user(ADMIN_USER)
    if existing is None:
        record = UserRecord(
            name=ADMIN_USER, role=Role.ADMIN, password_hash=await _hash(password)
        )
        if await store.create_user(record):
            log.info("admin_user_created", user=ADMIN_USER)
        return
    if authoritative and not await asyncio.to_thread(
        verify_password, existing.password_hash, password
    ):
        await store.update_user(ADMIN_USER, password_hash=await _hash(password), role=Role.ADMIN)
        log.warning("admin_password_reset", user=ADMIN_USER, source="IS_ADMIN_PASSWORD")


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


def _caller(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.user
    return principal


def user_document(user: UserRecord) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role.value,
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
    }


def token_document(token: TokenRecord) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "user": token.user,
        "label": token.label,
        "created_at": token.created_at.isoformat(),
    }


@get("/whoami")
async def whoami(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The caller's user name and role."""
    caller = _caller(request)
    return {"name": caller.name, "role": caller.role.value}


@get("/users")
async def list_users(request: Request[Any, Any, Any], offset: Offset = 0,
                     limit: Limit = 100) -> list[dict[str, Any]]:
    """Every user, by name (administrators only)."""
    store: Store = request.app.state.store
    return [user_document(u) for u in await store.list_users(offset=offset, limit=limit)]


@get("/users/{name:str}")
async def get_user(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """One user (administrators only)."""
    user = await request.app.state.store.get_user(name)
    if user is None:
        raise UserNotFoundError(name)
    return user_document(user)


@post("/users", status_code=201)
async def create_user(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Add a user with ``name``, ``password`` and ``role`` (administrators only)."""
    body = await read_json(request)
    name = check_user_name(body.get("name"))
    password = check_password(body.get("password"))
    role = to_role(body.get("role", Role.VIEWER.value))
    record = UserRecord(name=name, role=role, password_hash=await _hash(password))
    if not await request.app.state.store.create_user(record):
        raise UserExistsError(name)
    log.info("user_created", user=name, role=role.value, by=_caller(request).name)
    return user_document(record)


@put("/users/{name:str}")
async def update_user(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """Change a user's ``password`` and/or ``role``.

    Anyone may change their own password; only administrators change
    roles or other users.
    """
    caller = _caller(request)
    body = await read_json(request)
    changes: dict[str, Any] = {}
    if "role" in body:
        changes["role"] = to_role(body["role"])
    if "password" in body:
        changes["password_hash"] = await _hash(check_password(body["password"]))
    if not changes:
        raise AccountError("Send 'password' and/or 'role' to change.", field="password")
    _check_may_update(caller, name, changes)
    user = await request.app.state.store.update_user(name, **changes)
    if user is None:
        raise UserNotFoundError(name)
    log.info("user_updated", user=name, fields=sorted(changes), by=caller.name)
    return user_document(user)


def _check_may_update(caller: Principal, name: str, changes: dict[str, Any]) -> None:
    if caller.role is Role.ADMIN:
        if name == ADMIN_USER and changes.get("role", Role.ADMIN) is not Role.ADMIN:
            raise AccountError(f"User {ADMIN_USER!r} keeps role 'admin'.", field="role")
        return
    if name != caller.name or "role" in changes:
        raise PermissionDeniedException(
            f"User {caller.name!r} may change only their own password; changing "
            "roles or other users needs role 'admin'."
        )


@delete("/users/{name:str}", status_code=200)
async def delete_user(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """Delete a user and revoke their API tokens (administrators only)."""
    if name == ADMIN_USER:
        raise AccountError(f"User {ADMIN_USER!r} cannot be deleted.", field="name")
    if not await request.app.state.store.delete_user(name):
        raise UserNotFoundError(name)
    log.info("user_deleted", user=name, by=_caller(request).name)
    return {"name": name, "deleted": True}


@post("/tokens", status_code=201)
async def create_token(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Create an API token for the caller; the token is in the answer only."""
    caller = _caller(request)
    raw = await request.body()
    body = await read_json(request) if raw.strip() else {}
    label = body.get("label", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS:
        raise AccountError(
            f"Field 'label' must be text of at most {MAX_LABEL_CHARS} characters.",
            field="label",
        )
    token, record = new_token(caller.name, label)
    await request.app.state.store.create_token(record)
    log.info("token_created", user=caller.name, token_id=record.token_id)
    return {**token_document(record), "token": token}


@get("/tokens")
async def list_tokens(
    request: Request[Any, Any, Any],
    user: str | None = Parameter(default=None, max_length=64,
                                 description="Administrators: whose tokens (default all)."),
) -> list[dict[str, Any]]:
    """The caller's API tokens (administrators: everyone's, or ``user``'s)."""
    caller = _caller(request)
    store: Store = request.app.state.store
    owner = (user if caller.role is Role.ADMIN else caller.name)
    return [token_document(t) for t in await store.list_tokens(owner)]


@delete("/tokens/{token_id:str}", status_code=200)
async def revoke_token(request: Request[Any, Any, Any], token_id: str) -> dict[str, Any]:
    """Revoke one of the caller's API tokens (administrators: anyone's)."""
    caller = _caller(request)
    store: Store = request.app.state.store
    token = await store.get_token(token_id) if len(token_id) <= 64 else None
    if token is None or (token.user != caller.name and caller.role is not Role.ADMIN):
        raise TokenNotFoundError(token_id)
    await store.delete_token(token_id)
    log.info("token_revoked", user=token.user, token_id=token_id, by=caller.name)
    return {"token_id": token_id, "revoked": True}


ROUTES = [whoami, list_users, get_user, create_user, update_user, delete_user,
          create_token, list_tokens, revoke_token]
