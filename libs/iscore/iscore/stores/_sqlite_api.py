"""SQLite tables of the REST API: users, API tokens and reports.

A mixin of ``SqliteStore`` so its statements run on the store's one thread
and inside its transactions; kept apart from run state, which it never
touches.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from iscore.accounts import Role, TokenRecord, UserRecord
from iscore.models.run import utc_now
from iscore.reports import ReportRecord

T = TypeVar("T")

API_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id TEXT PRIMARY KEY, user TEXT NOT NULL, label TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS api_tokens_by_user ON api_tokens (user);
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY, application TEXT NOT NULL, run_id TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, row_count INTEGER NOT NULL,
    rows TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reports_by_application ON reports (application, created_at);
CREATE INDEX IF NOT EXISTS reports_by_created ON reports (created_at);
"""

_USER_FIELDS = frozenset({"role", "password_hash"})


class ApiTablesMixin:
    """Users, tokens and reports on the ``SqliteStore`` connection."""

    # Provided by SqliteStore.
    _write: Callable[..., Any]
    _read: Callable[..., Any]

    # Users -----------------------------------------------------------------

    async def create_user(self, user: UserRecord) -> bool:
        row = (user.name, user.role.value, user.password_hash,
               user.created_at.isoformat(), user.updated_at.isoformat())

        def create(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "INSERT OR IGNORE INTO users (name, role, password_hash, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?)",
                row,
            ).rowcount == 1

        result: bool = await self._write(create)
        return result

    async def get_user(self, name: str) -> UserRecord | None:
        rows = await self._read("SELECT * FROM users WHERE name = ?", name)
        return _user(rows[0]) if rows else None

    async def list_users(self, *, offset: int = 0, limit: int = 100) -> list[UserRecord]:
        rows = await self._read("SELECT * FROM users ORDER BY name LIMIT ? OFFSET ?",
                                limit, offset)
        return [_user(row) for row in rows]

    async def update_user(self, name: str, **fields: Any) -> UserRecord | None:
        unknown = sorted(set(fields) - _USER_FIELDS)
        if unknown:
            raise TypeError(f"UserRecord has no updatable field(s) {unknown}.")
        values = {key: Role(value).value if key == "role" else str(value)
                  for key, value in fields.items()}
        values["updated_at"] = utc_now().isoformat()
        assignments = ", ".join(f"{key} = ?" for key in values)

        def update(conn: sqlite3.Connection) -> sqlite3.Row | None:
            conn.execute(f"UPDATE users SET {assignments} WHERE name = ?",
                         (*values.values(), name))
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM users WHERE name = ?", (name,)
            ).fetchone()
            return row

        row = await self._write(update)
        return _user(row) if row is not None else None

    async def delete_user(self, name: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM api_tokens WHERE user = ?", (name,))
            return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 1

        result: bool = await self._write(delete)
        return result

    # API tokens ------------------------------------------------------------

    async def create_token(self, token: TokenRecord) -> None:
        row = (token.token_id, token.user, token.label, token.secret_sha256,
               token.created_at.isoformat())
        await self._write(lambda conn: conn.execute(
            "INSERT INTO api_tokens (token_id, user, label, secret_sha256, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            row,
        ))

    async def get_token(self, token_id: str) -> TokenRecord | None:
        rows = await self._read("SELECT * FROM api_tokens WHERE token_id = ?", token_id)
        return _token(rows[0]) if rows else None

    async def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        if user is None:
            rows = await self._read("SELECT * FROM api_tokens ORDER BY created_at, token_id")
        else:
            rows = await self._read(
                "SELECT * FROM api_tokens WHERE user = ? ORDER BY created_at, token_id", user
            )
        return [_token(row) for row in rows]

    async def delete_token(self, token_id: str) -> bool:
        return await self._changed_by(lambda conn: conn.execute(
            "DELETE FROM api_tokens WHERE token_id = ?", (token_id,)
        ).rowcount) > 0

    # Reports ---------------------------------------------------------------

    async def add_report_rows(
        self, report_id: str, *, application: str, run_id: str, rows: Sequence[dict[str, Any]]
    ) -> None:
        now = utc_now().isoformat()
        added = list(rows)

        def add(conn: sqlite3.Connection) -> None:
            current = conn.execute(
                "SELECT rows FROM reports WHERE report_id = ?", (report_id,)
            ).fetchone()
            if current is None:
                conn.execute(
                    "INSERT INTO reports (report_id, application, run_id, created_at, "
                    "updated_at, row_count, rows) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (report_id, application, run_id, now, now, len(added), json.dumps(added)),
                )
                return
            merged = json.loads(current["rows"]) + added
            conn.execute(
                "UPDATE reports SET rows = ?, row_count = ?, updated_at = ? "
                "WHERE report_id = ?",
                (json.dumps(merged), len(merged), now, report_id),
            )

        await self._write(add)

    async def get_report(self, report_id: str) -> ReportRecord | None:
        rows = await self._read("SELECT * FROM reports WHERE report_id = ?", report_id)
        return _report(rows[0], with_rows=True) if rows else None

    async def list_reports(
        self, *, application: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[ReportRecord]:
        columns = "report_id, application, run_id, created_at, updated_at, row_count"
        if application is None:
            rows = await self._read(
                f"SELECT {columns} FROM reports ORDER BY created_at DESC, report_id "
                "LIMIT ? OFFSET ?",
                limit, offset,
            )
        else:
            rows = await self._read(
                f"SELECT {columns} FROM reports WHERE application = ? "
                "ORDER BY created_at DESC, report_id LIMIT ? OFFSET ?",
                application, limit, offset,
            )
        return [_report(row, with_rows=False) for row in rows]

    async def delete_report(self, report_id: str) -> bool:
        return await self._changed_by(lambda conn: conn.execute(
            "DELETE FROM reports WHERE report_id = ?", (report_id,)
        ).rowcount) > 0

    async def delete_reports(self, application: str) -> int:
        return await self._changed_by(lambda conn: conn.execute(
            "DELETE FROM reports WHERE application = ?", (application,)
        ).rowcount)

    async def _changed_by(self, statement: Callable[[sqlite3.Connection], int]) -> Any:
        return await self._write(statement)


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        name=row["name"],
        role=Role(row["role"]),
        password_hash=row["password_hash"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        token_id=row["token_id"],
        user=row["user"],
        label=row["label"],
        secret_sha256=row["secret_sha256"],
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _report(row: sqlite3.Row, *, with_rows: bool) -> ReportRecord:
    return ReportRecord(
        report_id=row["report_id"],
        application=row["application"],
        run_id=row["run_id"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        row_count=row["row_count"],
        rows=json.loads(row["rows"]) if with_rows else [],
    )
