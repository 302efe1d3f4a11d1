"""Reading cache entries from step code: one short NATS request per read.

Steps run in a child process without store credentials; the cache lives in
a JetStream key-value bucket, so ``BaseStep.cache_read`` connects to the
NATS server the worker named in the invocation, reads one key and
disconnects. The read runs on a thread of its own with its own event loop,
so it works whether or not step code runs an event loop itself.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from iscore.cache import CacheError, from_entry

# Longest a cache read from step code may take, connection included, in s.
READ_TIMEOUT_S = 5.0


def read_remote(url: str, cache_id: str) -> tuple[Any, float | None] | None:
    """Return ``(value, expires_at)`` of ``cache_id`` from the bucket; None if absent.

    Raises ``CacheError`` when no cache is reachable from here (``url`` is
    empty in the local harness) or the read fails or times out.
    """
    if not url:
        raise CacheError(
            f"Cache entry {cache_id!r} cannot be read: this step runs without a cache "
            "bucket (local harness). Write it with cache_write in the same step, or run "
            "the step on a worker.",
            field="cache_id",
        )
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = asyncio.run(_read(url, cache_id))
        except Exception as err:  # reported to the step below.  # noqa: BLE001
            outcome["error"] = err

    thread = threading.Thread(target=work, name="cache-read", daemon=True)
    thread.start()
    thread.join(READ_TIMEOUT_S + 1.0)
    if "error" in outcome or "value" not in outcome:
        reason = outcome.get("error", "timed out")
        raise CacheError(
            f"Cache entry {cache_id!r} could not be read ({reason}); retry the step.",
            field="cache_id",
        )
    value: tuple[Any, float | None] | None = outcome["value"]
    return value


async def _read(url: str, cache_id: str) -> tuple[Any, float | None] | None:
    import nats
    from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

    from iscore import subjects

    async with asyncio.timeout(READ_TIMEOUT_S):
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=0)
        try:
            bucket = await nc.jetstream(timeout=READ_TIMEOUT_S).key_value(subjects.CACHE_BUCKET)
            item = await bucket.get(cache_id)
        except (BucketNotFoundError, KeyNotFoundError, NotFoundError):
            return None
        finally:
            await nc.close()
    return from_entry(item.value or b"")
