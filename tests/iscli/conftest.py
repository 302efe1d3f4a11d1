"""The integration suite's system fixtures, for the tests that drive iscli."""

from __future__ import annotations

from tests.integration.conftest import module_system, system_factory

__all__ = ["module_system", "system_factory"]
