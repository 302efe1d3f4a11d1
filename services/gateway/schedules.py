"""Schedules: timed runs (owned by the scheduler work)."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
