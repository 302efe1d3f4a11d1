"""Reports of applications run with generate_report."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
