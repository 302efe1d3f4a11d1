"""iscli, the command line client of the Integration Service gateway."""

from iscli.main import main

__all__ = ["main"]
