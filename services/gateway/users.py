"""Users, roles and API tokens."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
