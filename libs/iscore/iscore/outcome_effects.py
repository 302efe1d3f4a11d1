"""What a step's outcome asks the worker to do besides reporting its result.

Cache entries written with ``BaseStep.cache_write`` are stored in the cache
bucket and report rows are forwarded on the ``StepResult``, both only for a
successful attempt: a failed attempt may be retried, and its half-done
effects must not count twice.
"""

from __future__ import annotations

from typing import Any

import structlog
from nats.js.kv import KeyValue

from iscore.bus import Bus
from iscore.cache import CacheError, check_cache_id, open_bucket

log = structlog.get_logger(__name__)

_buckets: dict[int, KeyValue] = {}


async def apply_outcome_effects(bus: Bus, header: dict[str, Any]) -> dict[str, Any]:
    """Store the outcome's cache writes; return extra ``StepResult`` fields.

    ``header`` is the checked outcome header (``wire.outcome_header_and_data``).
    A NATS failure propagates, so the task is not acked and runs again.
    """
    if header.get("error_type") is not None:
        return {}
    writes: dict[str, bytes] = header.get("cache_writes") or {}
    if writes:
        bucket = await _bucket(bus)
        for cache_id, entry in writes.items():
            try:
                check_cache_id(cache_id)
            except CacheError:
                log.warning("cache_write_refused", cache_id=str(cache_id)[:200])
                continue
            await bucket.put(cache_id, bytes(entry))
        log.debug("cache_entries_written", entry_count=len(writes))
    return {"report_rows": list(header.get("report_rows") or [])}


async def _bucket(bus: Bus) -> KeyValue:
    key = id(bus)
    if key not in _buckets:
        _buckets[key] = await open_bucket(bus.js)
    return _buckets[key]
