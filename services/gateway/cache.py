"""Named cache entries written by steps."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
