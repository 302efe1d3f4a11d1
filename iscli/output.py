"""What iscli writes: plain lines and tables for people, JSON for scripts.

With ``--json`` stdout carries exactly one JSON document and progress goes
to stderr, so ``iscli --json ... | jq`` always parses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def out(text: str = "") -> None:
    """Write one line to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Write one line to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def emit_json(value: Any) -> None:
    """Write ``value`` to stdout as indented JSON."""
    out(json.dumps(value, indent=2, sort_keys=False, default=str))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """Write ``rows`` as aligned columns; ``columns`` pairs a header with a key."""
    cells = [[_cell(row.get(key)) for _, key in columns] for row in rows]
    headers = [header for header, _ in columns]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    out("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def raw(text: str) -> None:
    """Write ``text`` to stdout as it is (a step's source, for example)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def compact(value: Any, *, limit: int = 200) -> str:
    """``value`` as one line of JSON, cut at ``limit`` characters."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
