"""Query parameters every list endpoint shares: ``offset``, ``limit`` and ``q``.

Lists answer a JSON array of at most ``limit`` items starting at
``offset``; ``X-Total-Count`` is not sent because counting a filtered
store query costs as much as reading it.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

# Most items one list request returns.
MAX_LIMIT = 1000
# Longest name filter accepted, in characters.
MAX_FILTER_CHARS = 128

Offset = Annotated[int, Parameter(ge=0, le=10_000_000, description="Items to skip.")]
Limit = Annotated[
    int, Parameter(ge=1, le=MAX_LIMIT, description=f"Most items to return (1 to {MAX_LIMIT}).")
]
NameFilter = Annotated[
    str | None,
    Parameter(
        max_length=MAX_FILTER_CHARS,
        description="Only items whose name contains this text (case-insensitive).",
    ),
]


def matches(name: str, text: str | None) -> bool:
    """True when ``name`` passes the ``q`` filter ``text``."""
    return text is None or text.lower() in name.lower()
