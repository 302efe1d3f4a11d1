"""Named cache entries written by steps (``BaseStep.cache_write``)."""

from __future__ import annotations

import asyncio
from typing import Any

from iscore.cache import CacheNotFoundError, check_cache_id, delete_entry, read_entry
from litestar import Request, delete, get

# Longest a cache request waits for NATS, in seconds; then 503.
CACHE_TIMEOUT_S = 5.0


@get("/cache/{cache_id:str}")
async def get_cache(request: Request[Any, Any, Any], cache_id: str) -> dict[str, Any]:
    """One cache entry: its value and expiry (epoch seconds, or null)."""
    check_cache_id(cache_id)
    async with asyncio.timeout(CACHE_TIMEOUT_S):
        value, expires_at = await read_entry(request.app.state.cache, cache_id)
    return {"id": cache_id, "value": value, "expires_at": expires_at}


@delete("/cache/{cache_id:str}", status_code=200)
async def delete_cache(request: Request[Any, Any, Any], cache_id: str) -> dict[str, Any]:
    """Delete one cache entry."""
    check_cache_id(cache_id)
    async with asyncio.timeout(CACHE_TIMEOUT_S):
        deleted = await delete_entry(request.app.state.cache, cache_id)
    if not deleted:
        raise CacheNotFoundError(cache_id)
    return {"id": cache_id, "deleted": True}


ROUTES = [get_cache, delete_cache]
