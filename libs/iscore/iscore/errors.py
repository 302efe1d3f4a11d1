"""The exception hierarchy every iscore module raises from."""

from __future__ import annotations


class IscoreError(Exception):
    """Base of every error raised by iscore.

    Subclasses name the condition and carry identifiers as attributes so a
    boundary (HTTP, NATS consumer, CLI) can translate them without parsing
    the text. ``field`` names the offending input field where there is one.
    """

    code: str = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @property
    def detail(self) -> str:
        return str(self)
