"""PowerFlow compatibility: step files import ``BaseStep`` from here."""

from iscore.runtime.basestep import BaseStep

__all__ = ["BaseStep"]
