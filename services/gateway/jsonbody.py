"""Strict JSON request bodies with the line and column of a fault.

MANUAL-NOTES 1: the manual's examples contain Python literals and missing
commas; we still answer invalid JSON with 400 and say where it broke.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request

from iscore.errors import IscoreError

# Largest request body accepted, and deepest nesting.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64


class InvalidBodyError(IscoreError):
    code = "invalid_json"


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_json(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidBodyError(f"Request body exceeds {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        raise InvalidBodyError("Request body is empty; send a JSON object.")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as err:
        raise InvalidBodyError("Request body is not UTF-8 text.") from err
    except json.JSONDecodeError as err:
        raise InvalidBodyError(
            f"Request body is not valid JSON: {err.msg} at line {err.lineno} column "
            f"{err.colno}. Python literals such as True, None or single quotes are not JSON; "
            "use true, null and double quotes."
        ) from err
    if not isinstance(value, dict):
        raise InvalidBodyError(
            f"Request body must be a JSON object, found {type(value).__name__}."
        )
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise InvalidBodyError(f"Request body nests deeper than {MAX_DEPTH} levels.")
    return value


async def read_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return parse_json(await request.body())
