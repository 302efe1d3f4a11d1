"""Pytest fixtures for step authors, loaded as the ``iscore_steps`` plugin.

``step_runner`` runs step files or source with parameters, variables,
configuration and previous steps' data. ``syncpack_step_runner`` runs steps
of an installed SyncPack from application-style entries, the way SyncPack
test suites do (``runner.data_in`` then ``runner.run(entry)``).
"""

from __future__ import annotations

import pytest

from iscore.runtime.harness import StepRunner, SyncPackStepRunner

__all__ = ["step_runner", "syncpack_step_runner"]


@pytest.fixture
def step_runner() -> StepRunner:
    """A fresh ``StepRunner`` for one test."""
    return StepRunner()


@pytest.fixture
def syncpack_step_runner() -> SyncPackStepRunner:
    """A fresh ``SyncPackStepRunner`` (empty ``data_in``) for one test."""
    return SyncPackStepRunner()
