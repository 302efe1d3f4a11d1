"""Named cache entries steps write and read, in a JetStream key-value bucket.

Entries are JSON text under the key ``cache_id``; each carries its own
expiry time (``expires_at``, epoch seconds, or None). JetStream's per-key
TTL needs a recent server and client, so expiry is checked on read and an
expired entry is deleted then; the bucket's own ``max_age`` bounds how long
any entry can live. Writers: the stepworker (from a step's outcome) and
nobody else; readers: the gateway and step code.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from iscore import subjects
from iscore.errors import IscoreError

# KV keys are NATS subject tokens: letters, digits, '_', '-', '=', '/', '.'
# (no leading or trailing dot). We keep to a safe, URL-friendly subset.
CACHE_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
MAX_CACHE_ID_CHARS = 200
# Largest cache value, as JSON text, in bytes.
MAX_VALUE_BYTES = 1024 * 1024
# Longest an entry may live, whatever its ttl: 30 days, in seconds.
MAX_TTL_S = 30 * 86400.0


class CacheError(IscoreError):
    """A cache entry cannot be written or read as asked."""

    code = "invalid_cache_entry"


class CacheNotFoundError(IscoreError):
    """No cache entry has this id (or it expired)."""

    code = "cache_not_found"

    def __init__(self, cache_id: str) -> None:
        super().__init__(
            f"Cache entry {cache_id!r} does not exist or has expired.", field="cache_id"
        )
        self.cache_id = cache_id


def check_cache_id(cache_id: object) -> str:
    """Return ``cache_id`` if it can name an entry, else raise ``CacheError``."""
    if (
        not isinstance(cache_id, str)
        or len(cache_id) > MAX_CACHE_ID_CHARS
        or not CACHE_ID_PATTERN.fullmatch(cache_id)
    ):
        raise CacheError(
            f"Cache id {cache_id!r} is not valid: expected 1 to {MAX_CACHE_ID_CHARS} "
            "letters, digits, '_', '-', and dots between them.",
            field="cache_id",
        )
    return cache_id


def to_entry(value: Any, ttl_s: float | None, *, now: float | None = None) -> bytes:
    """Encode ``value`` (JSON-like) with its expiry as the bytes the bucket keeps.

    Raises ``CacheError`` for a value JSON cannot hold, a value larger than
    ``MAX_VALUE_BYTES`` or a ttl that is not a positive number of seconds.
    """
    if ttl_s is not None and (
        isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S
    ):
        raise CacheError(
            f"Cache ttl_s {ttl_s!r} is not valid: expected seconds between 0 and {MAX_TTL_S:g}.",
            field="ttl_s",
        )
    expires_at = None if ttl_s is None else (now or time.time()) + float(ttl_s)
    try:
        text = json.dumps({"value": value, "expires_at": expires_at}, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CacheError(
            f"Cache value cannot be stored: {err}; cache values must be JSON-like (dict, "
            "list, str, int, float, bool, None).",
            field="value",
        ) from err
    data = text.encode()
    if len(data) > MAX_VALUE_BYTES:
        raise CacheError(
            f"Cache value of {len(data)} bytes exceeds the {MAX_VALUE_BYTES}-byte limit; "
            "keep large data in save_data_for_next_step.",
            field="value",
        )
    return data


def from_entry(data: bytes, *, now: float | None = None) -> tuple[Any, float | None] | None:
    """Decode bucket bytes to ``(value, expires_at)``; None if expired or unreadable."""
    try:
        entry = json.loads(data)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    expires_at = entry.get("expires_at")
    if isinstance(expires_at, int | float) and expires_at <= (now or time.time()):
        return None
    return entry.get("value"), expires_at


async def open_bucket(js: JetStreamContext) -> KeyValue:
    """The cache bucket, created on first use."""
    try:
        return await js.key_value(subjects.CACHE_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(
            KeyValueConfig(
                bucket=subjects.CACHE_BUCKET,
                history=1,
                ttl=MAX_TTL_S,
                storage=StorageType.FILE,
            )
        )


async def read_entry(bucket: KeyValue, cache_id: str) -> tuple[Any, float | None]:
    """Value and expiry of ``cache_id``; ``CacheNotFoundError`` if absent or expired."""
    try:
        item = await bucket.get(cache_id)
    except (KeyNotFoundError, NotFoundError) as err:
        raise CacheNotFoundError(cache_id) from err
    decoded = from_entry(item.value or b"")
    if decoded is None:
        await delete_entry(bucket, cache_id)
        raise CacheNotFoundError(cache_id)
    return decoded


async def delete_entry(bucket: KeyValue, cache_id: str) -> bool:
    """Delete ``cache_id``; False when there was no such entry."""
    try:
        await bucket.get(cache_id)
    except (KeyNotFoundError, NotFoundError):
        return False
    await bucket.purge(cache_id)
    return True
