"""Schedule bookkeeping in the store: compare-and-set claims that survive saves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from iscore.stores.sqlite import SqliteStore

DOCUMENT: dict[str, Any] = {
    "application_id": "nightly",
    "entry_id": "every-minute",
    "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}},
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.db")
    await opened.open()
    yield opened
    await opened.close()


async def claim(
    store: SqliteStore, expected_cursor_ms: int, *fire_ms: int, revision: int = 1
) -> bool:
    return await store.claim_schedule_fires(
        "every-minute",
        revision=revision,
        expected_cursor_ms=expected_cursor_ms,
        cursor_ms=max(fire_ms),
        fire_ms=fire_ms,
        late_count=1,
        skipped_count=2,
    )


async def test_new_schedule_starts_with_anchor_and_cursor_at_the_save(
    store: SqliteStore,
) -> None:
    record = await store.put_schedule("every-minute", DOCUMENT)

    assert (record.revision, record.pending_fire_ms, record.fire_count) == (1, [], 0)
    assert record.anchor_ms == record.cursor_ms
    assert abs(record.cursor_ms / 1000 - record.created_at.timestamp()) < 0.01


async def test_only_one_claim_of_the_same_fires_succeeds(store: SqliteStore) -> None:
    cursor = (await store.put_schedule("every-minute", DOCUMENT)).cursor_ms

    first = await claim(store, cursor, cursor + 60_000)
    second = await claim(store, cursor, cursor + 60_000)

    record = await store.get_schedule("every-minute")
    assert (first, second) == (True, False)
    assert record is not None
    assert (record.cursor_ms, record.pending_fire_ms) == (cursor + 60_000, [cursor + 60_000])
    assert (record.fire_count, record.late_count, record.skipped_count) == (1, 1, 2)


async def test_no_new_claim_while_claimed_fires_are_unconfirmed(store: SqliteStore) -> None:
    cursor = (await store.put_schedule("every-minute", DOCUMENT)).cursor_ms
    await claim(store, cursor, cursor + 60_000)

    blocked = await claim(store, cursor + 60_000, cursor + 120_000)
    confirmed = await store.confirm_schedule_fires("every-minute", fire_ms=[cursor + 60_000])
    allowed = await claim(store, cursor + 60_000, cursor + 120_000)

    record = await store.get_schedule("every-minute")
    assert (blocked, confirmed, allowed) == (False, True, True)
    assert record is not None
    assert record.last_fire_ms == cursor + 60_000


async def test_saving_again_keeps_claimed_fires_and_counters_but_restarts_the_cursor(
    store: SqliteStore,
) -> None:
    cursor = (await store.put_schedule("every-minute", DOCUMENT)).cursor_ms
    await claim(store, cursor, cursor + 60_000)

    record = await store.put_schedule("every-minute", {**DOCUMENT, "enabled": False})

    assert record.revision == 2
    assert record.pending_fire_ms == [cursor + 60_000]
    assert record.fire_count == 1
    assert record.cursor_ms == record.anchor_ms >= cursor
    assert not await claim(store, record.cursor_ms, record.cursor_ms + 1, revision=1)


async def test_deleted_schedule_is_gone_and_cannot_be_claimed(store: SqliteStore) -> None:
    cursor = (await store.put_schedule("every-minute", DOCUMENT)).cursor_ms

    deleted = await store.delete_schedule("every-minute")

    assert (deleted, await store.delete_schedule("every-minute")) == (True, False)
    assert await store.get_schedule("every-minute") is None
    assert not await claim(store, cursor, cursor + 60_000)
    assert await store.list_schedules() == []
