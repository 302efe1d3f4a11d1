"""Storage backends behind one interface."""

from iscore.stores.base import (
    ApplicationRecord,
    ConfigurationRecord,
    DefinitionRecord,
    LogLine,
    StepRecord,
    Store,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
    open_store,
)
from iscore.stores.sqlite import SqliteStore

__all__ = [
    "ApplicationRecord",
    "ConfigurationRecord",
    "DefinitionRecord",
    "LogLine",
    "SqliteStore",
    "StepRecord",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "VersionConflictError",
    "open_store",
]
