"""Task control: revoke, replay and terminate."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
