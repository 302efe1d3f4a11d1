"""JSON helpers PowerFlow steps import from ``ipaascommon.json_utils``."""

from __future__ import annotations

import json
from typing import Any

from ipaascommon.ipaas_exceptions import InvalidJsonException

__all__ = ["get_dict_from_ex_json_str"]


def get_dict_from_ex_json_str(text: str | bytes) -> dict[str, Any]:
    """Return the first JSON object found in ``text``.

    ``text`` may be exactly a JSON object or hold one inside longer text,
    such as a log line or an HTTP error body (``"error: {...} at 10:02"``).
    Raises ``InvalidJsonException`` when no JSON object can be read.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise InvalidJsonException(
            f"Expected JSON text as str or bytes, got {type(text).__name__!r}; pass the text."
        )
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    preview = text if len(text) <= 80 else text[:77] + "..."
    raise InvalidJsonException(
        f"Text {preview!r} holds no JSON object; pass text containing one, such as '{{\"a\": 1}}'."
    )
