"""SQLite table of schedules and the scheduler's per-schedule bookkeeping.

A mixin of ``SqliteStore`` so its statements run on the store's one thread
and inside its transactions. Claims and confirmations of fires are single
``UPDATE ... WHERE`` compare-and-set statements, so scheduler replicas in
several processes sharing the file never both claim the same fires.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from iscore.models.run import utc_now
from iscore.models.schedule import ScheduleRecord

SCHEDULE_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    schedule_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, document TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, anchor_ms INTEGER NOT NULL,
    cursor_ms INTEGER NOT NULL, pending TEXT NOT NULL DEFAULT '[]',
    fire_count INTEGER NOT NULL DEFAULT 0, late_count INTEGER NOT NULL DEFAULT 0,
    skipped_count INTEGER NOT NULL DEFAULT 0, last_fire_ms INTEGER);
"""


class ScheduleTablesMixin:
    """Schedules on the ``SqliteStore`` connection."""

    # Provided by SqliteStore.
    _write: Callable[..., Any]
    _read: Callable[..., Any]

    async def put_schedule(self, schedule_id: str, document: dict[str, Any]) -> ScheduleRecord:
        text = json.dumps(document)

        def put(conn: sqlite3.Connection) -> sqlite3.Row:
            now = utc_now()
            now_ms = round(now.timestamp() * 1000)
            # A save starts the schedule afresh from now. Counters stay, and
            # so do claimed fires not yet confirmed: they are still published.
            conn.execute(
                "INSERT INTO schedules (schedule_id, revision, document, created_at, "
                "updated_at, anchor_ms, cursor_ms) VALUES (?, 1, ?, ?, ?, ?, ?) "
                "ON CONFLICT (schedule_id) DO UPDATE SET revision = revision + 1, "
                "document = excluded.document, updated_at = excluded.updated_at, "
                "anchor_ms = excluded.anchor_ms, cursor_ms = excluded.cursor_ms",
                (schedule_id, text, now.isoformat(), now.isoformat(), now_ms, now_ms),
            )
            row: sqlite3.Row = conn.execute(
                "SELECT * FROM schedules WHERE schedule_id = ?", (schedule_id,)
            ).fetchone()
            return row

        return _schedule_record(await self._write(put))

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        rows = await self._read("SELECT * FROM schedules WHERE schedule_id = ?", schedule_id)
        return _schedule_record(rows[0]) if rows else None

    async def list_schedules(self, *, offset: int = 0, limit: int = 100) -> list[ScheduleRecord]:
        rows = await self._read(
            "SELECT * FROM schedules ORDER BY schedule_id LIMIT ? OFFSET ?", limit, offset
        )
        return [_schedule_record(row) for row in rows]

    async def delete_schedule(self, schedule_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM schedules WHERE schedule_id = ?", (schedule_id,))
            return cursor.rowcount > 0

        deleted: bool = await self._write(delete)
        return deleted

    async def claim_schedule_fires(
        self,
        schedule_id: str,
        *,
        revision: int,
        expected_cursor_ms: int,
        cursor_ms: int,
        fire_ms: Sequence[int],
        late_count: int = 0,
        skipped_count: int = 0,
    ) -> bool:
        params = (
            cursor_ms,
            json.dumps(list(fire_ms)),
            len(fire_ms),
            late_count,
            skipped_count,
            schedule_id,
            revision,
            expected_cursor_ms,
        )

        def claim(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE schedules SET cursor_ms = ?, pending = ?, "
                "fire_count = fire_count + ?, late_count = late_count + ?, "
                "skipped_count = skipped_count + ? "
                "WHERE schedule_id = ? AND revision = ? AND cursor_ms = ? AND pending = '[]'",
                params,
            )
            return cursor.rowcount == 1

        claimed: bool = await self._write(claim)
        return claimed

    async def confirm_schedule_fires(self, schedule_id: str, *, fire_ms: Sequence[int]) -> bool:
        if not fire_ms:
            return False
        pending = json.dumps(list(fire_ms))
        last = max(fire_ms)

        def confirm(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE schedules SET pending = '[]', "
                "last_fire_ms = MAX(COALESCE(last_fire_ms, ?), ?) "
                "WHERE schedule_id = ? AND pending = ?",
                (last, last, schedule_id, pending),
            )
            return cursor.rowcount == 1

        confirmed: bool = await self._write(confirm)
        return confirmed


def _schedule_record(row: sqlite3.Row) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=row["schedule_id"],
        revision=row["revision"],
        document=json.loads(row["document"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        anchor_ms=row["anchor_ms"],
        cursor_ms=row["cursor_ms"],
        pending_fire_ms=json.loads(row["pending"]),
        fire_count=row["fire_count"],
        late_count=row["late_count"],
        skipped_count=row["skipped_count"],
        last_fire_ms=row["last_fire_ms"],
    )
