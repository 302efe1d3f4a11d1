"""Strict JSON request bodies with the line and column of a fault.

MANUAL-NOTES 1: the manual's examples contain Python literals and missing
commas; we still answer invalid JSON with 400 and say where it broke.
"""

from __future__ import annotations

import json
from typing import Any

from iscore.errors import IscoreError
from litestar import Request

# Largest request body accepted, and deepest nesting.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
# Longest string value (a step's source is the big one) and object key, in characters.
MAX_STRING_CHARS = 8 * 1024 * 1024
MAX_KEY_CHARS = 1024


class InvalidBodyError(IscoreError):
    code = "invalid_json"


def _check_shape(value: Any) -> None:
    """Refuse nesting, string and key sizes past the limits, naming the place."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidBodyError(
                f"Request body nests deeper than {MAX_DEPTH} levels at {where or '(top)'!r}.",
                field=where or None,
            )
        if isinstance(item, str) and len(item) > MAX_STRING_CHARS:
            raise InvalidBodyError(
                f"Field {where!r} holds {len(item)} characters; at most "
                f"{MAX_STRING_CHARS} are accepted.",
                field=where,
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if len(key) > MAX_KEY_CHARS:
                    raise InvalidBodyError(
                        f"A key of {len(key)} characters in {where or '(top)'!r} is longer "
                        f"than the {MAX_KEY_CHARS} accepted.",
                        field=where or None,
                    )
                stack.append((child, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


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
    except RecursionError as err:
        raise InvalidBodyError(f"Request body nests deeper than {MAX_DEPTH} levels.") from err
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
    _check_shape(value)
    return value


async def read_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request's body as one JSON object; ``InvalidBodyError`` (400) otherwise."""
    return parse_json(await request.body())
