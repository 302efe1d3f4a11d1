"""Run parameters from the command line and the progress lines of a run."""

from __future__ import annotations

from typing import Any

import pytest

from iscli.errors import UsageError
from iscli.progress import parse_params, step_changes


def step(name: str, state: str, attempt: int = 1, error: str | None = None) -> dict[str, Any]:
    return {"name": name, "state": state, "attempt": attempt, "error": error}


def test_param_values_are_json_when_they_parse_and_text_otherwise() -> None:
    params = parse_params(["limit=10", "dry=true", "region=emea", "ids=[1,2]", "empty="])

    assert params == {"limit": 10, "dry": True, "region": "emea", "ids": [1, 2], "empty": ""}


def test_param_without_equals_sign_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="Parameter 'limit' is not NAME=VALUE"):
        parse_params(["limit"])


def test_pending_steps_print_nothing() -> None:
    assert step_changes({"steps": [step("A", "PENDING", 0)]}, {}) == []


def test_each_state_change_prints_one_line() -> None:
    seen: dict[str, Any] = {}
    step_changes({"steps": [step("A", "PENDING", 0)]}, seen)

    running = step_changes({"steps": [step("A", "STARTED")]}, seen)
    again = step_changes({"steps": [step("A", "STARTED")]}, seen)
    retry = step_changes({"steps": [step("A", "RETRY", 2)]}, seen)
    failed = step_changes({"steps": [step("A", "FAILURE", 2, "boom")]}, seen)

    assert running == ["step 'A' running"]
    assert again == []
    assert retry == ["step 'A' retrying (attempt 2)"]
    assert failed == ["step 'A' failed (attempt 2): boom"]
