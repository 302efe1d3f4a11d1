"""Users, roles and API tokens: password hashing and token checks.

Passwords are hashed with Argon2id (argon2-cffi). API tokens are random
strings ``ist_<token id>_<secret>``; only the SHA-256 of the secret is
stored, which is enough for a 256-bit random secret (no stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from iscore.errors import IscoreError
from iscore.models.run import utc_now

# The administrator account created on first start (MANUAL-NOTES 5).
ADMIN_USER = "isadmin"
# User names end up in URLs and logs: keep them plain.
USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")
# Shortest password accepted when a user is created or changes it.
MIN_PASSWORD_CHARS = 8
# Longest password accepted: Argon2 hashes anything, but a megabyte
# password is a denial-of-service attempt, not a password.
MAX_PASSWORD_CHARS = 1024
TOKEN_PREFIX = "ist_"
_TOKEN_PATTERN = re.compile(r"ist_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})")

_hasher = PasswordHasher()


class Role(StrEnum):
    """What a user may do; each role includes every right of the roles below it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """True when this role has at least the rights of ``needed``."""
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.EDITOR: 2, Role.ADMIN: 3}


class AccountError(IscoreError):
    """A user or token request cannot be carried out as given."""

    code = "invalid_account"


class UserNotFoundError(IscoreError):
    """No user has this name."""

    code = "user_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"User {name!r} does not exist.", field="name")
        self.name = name


class UserExistsError(IscoreError):
    """A user with this name exists already."""

    code = "user_exists"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"User {name!r} exists already; change it with PUT /api/v1/users/{name}.",
            field="name",
        )
        self.name = name


class TokenNotFoundError(IscoreError):
    """No API token has this id (or it belongs to someone else)."""

    code = "token_not_found"

    def __init__(self, token_id: str) -> None:
        super().__init__(f"API token {token_id!r} does not exist.", field="token_id")
        self.token_id = token_id


class UserRecord(BaseModel):
    """One user as the store keeps it; ``password_hash`` is an Argon2 PHC string."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    password_hash: str
    created_at: AwareDatetime = Field(default_factory=utc_now)
    updated_at: AwareDatetime = Field(default_factory=utc_now)


class TokenRecord(BaseModel):
    """One API token; the secret itself is never stored, only its SHA-256."""

    model_config = ConfigDict(frozen=True)

    token_id: str
    user: str
    label: str = ""
    secret_sha256: str
    created_at: AwareDatetime = Field(default_factory=utc_now)


def check_user_name(name: object) -> str:
    """Return ``name`` if it can name a user, else raise ``AccountError``."""
    if not isinstance(name, str) or not USER_NAME_PATTERN.fullmatch(name):
        raise AccountError(
            f"User name {name!r} is not valid: expected 1 to 64 letters, digits, '_', "
            "'.', '@' or '-'.",
            field="name",
        )
    return name


def check_password(password: object, *, field: str = "password") -> str:
    """Return ``password`` if it is long enough and not absurdly long."""
    if not isinstance(password, str):
        raise AccountError("Field 'password' must be a string.", field=field)
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(
            f"A password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters, "
            f"found {len(password)}.",
            field=field,
        )
    return password


def to_role(value: object) -> Role:
    """Return the role named ``value``; raise ``AccountError`` for another value."""
    try:
        return Role(str(value))
    except ValueError as err:
        names = ", ".join(role.value for role in Role)
        raise AccountError(
            f"Role {value!r} does not exist; expected one of {names}.", field="role"
        ) from err


def hash_password(password: str) -> str:
    """Hash ``password`` with Argon2id; slow on purpose (tens of milliseconds)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; never raises for a mismatch."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(user: str, label: str = "") -> tuple[str, TokenRecord]:
    """Make an API token for ``user``: the secret to show once, and its record."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        token_id=token_id, user=user, label=label, secret_sha256=_sha256(secret)
    )
    return f"{TOKEN_PREFIX}{token_id}_{secret}", record


def parse_token(token: str) -> tuple[str, str] | None:
    """Split a bearer token into ``(token id, secret)``; None if it is malformed."""
    match = _TOKEN_PATTERN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def token_matches(record: TokenRecord, secret: str) -> bool:
    """True when ``secret`` is the one ``record`` was made with (constant time)."""
    return hmac.compare_digest(record.secret_sha256, _sha256(secret))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
