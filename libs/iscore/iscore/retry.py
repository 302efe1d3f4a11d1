"""When a failed step is tried again (MANUAL-NOTES 17).

``retry_max`` counts retries after the first attempt. Without
``retry_backoff`` every retry waits ``retry_countdown`` seconds; with it the
waits are 1, 2, 4, 8 ... seconds, each capped at ``retry_backoff_max``.
``retry_jitter`` replaces a wait with a random one between 0 and that wait.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

DEFAULT_COUNTDOWN_S = 180.0
DEFAULT_BACKOFF_MAX_S = 600.0


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def retries_left(entry: Mapping[str, Any], attempt: int) -> bool:
    """Whether attempt number ``attempt`` (from 1) may be followed by another."""
    return attempt <= int(entry.get("retry_max") or 0)


def retry_delay_s(
    entry: Mapping[str, Any], retry_number: int, *, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
    if _flag(entry.get("retry_backoff")):
        cap = float(entry.get("retry_backoff_max") or DEFAULT_BACKOFF_MAX_S)
        wait = min(float(2 ** (retry_number - 1)), cap)
    else:
        countdown = entry.get("retry_countdown")
        wait = DEFAULT_COUNTDOWN_S if countdown is None else float(countdown)
    if _flag(entry.get("retry_jitter")):
        wait = (rng or random).uniform(0.0, wait)
    return wait
