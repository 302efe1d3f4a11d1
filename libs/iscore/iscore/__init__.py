"""Shared core of Integration Service: models, DAG, runtime, messages, store."""

from iscore.errors import IscoreError

__all__ = ["IscoreError"]
