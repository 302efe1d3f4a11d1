"""Runs of applications and the step tasks inside them, as the store keeps them.

States are the ones users' scripts test for (MANUAL-NOTES 6). Records are
frozen: change one with ``record.model_copy(update={"state": RunState.STARTED})``
in memory, or with the store's compare-and-set updates.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from iscore.subjects import DEFAULT_QUEUE

# Prefix of every application run id (MANUAL-NOTES 6).
RUN_ID_PREFIX = "isapp-"


class RunState(StrEnum):
    """State of a run or of one step task."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"

    @property
    def is_final(self) -> bool:
        """True for states a run or task never leaves."""
        return self in FINAL_STATES


# States a run or task never leaves, and the ones it may still leave.
FINAL_STATES = frozenset({RunState.SUCCESS, RunState.FAILURE, RunState.REVOKED})
ACTIVE_STATES = frozenset(set(RunState) - FINAL_STATES)


def new_run_id() -> str:
    """A fresh application run id, ``isapp-<uuid4>``."""
    return f"{RUN_ID_PREFIX}{uuid.uuid4()}"


def new_task_id() -> str:
    """A fresh step task id (a uuid4)."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class RunRecord(BaseModel):
    """One run of an application.

    ``application_version`` and ``step_versions`` (step file -> version) pin
    the definitions the run used, so a replay runs the same code.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str = Field(default_factory=new_run_id, pattern=r"^isapp-")
    application: str
    # 0 for a run refused before its application could be read.
    application_version: int = Field(ge=0)
    state: RunState = RunState.PENDING
    app_variables: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    configuration: str | None = None
    triggered_by: list[dict[str, Any]] = Field(default_factory=list)
    created_at: AwareDatetime = Field(default_factory=utc_now)
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    step_versions: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    replay_of: str | None = None
    # The configuration version the run read: a replay uses the same values.
    configuration_version: int | None = None


class StepTaskRecord(BaseModel):
    """One step of one run, across all its attempts.

    ``attempt`` is 0 before the first dispatch and counts from 1. ``result``
    references the data the step saved: ``{"inline": bytes}``,
    ``{"object": key, "size_bytes": n}``, or None when it saved nothing.
    """

    model_config = ConfigDict(frozen=True)

    task_id: str = Field(default_factory=new_task_id)
    run_id: str
    name: str
    file: str
    position: int = Field(ge=0)
    state: RunState = RunState.PENDING
    attempt: int = Field(default=0, ge=0)
    queue: str = DEFAULT_QUEUE
    entry: dict[str, Any] = Field(default_factory=dict)
    traceback: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    has_data: bool = False
    dispatched_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    next_attempt_at: AwareDatetime | None = None
    worker: str | None = None
