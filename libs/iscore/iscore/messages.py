"""The payload of every subject: one pydantic model each, msgpack on the wire.

``encode`` and ``decode`` are the only way messages become bytes and back;
``decode`` turns anything malformed into ``MessageInvalidError`` so a
consumer can dead-letter it with the reason instead of crashing.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypeVar

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iscore.errors import IscoreError

# Largest message a consumer will try to decode; bigger data travels
# through the object store and only its name is in the message.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class MessageInvalidError(IscoreError):
    """A message body is not valid msgpack or does not match its model."""

    code = "invalid_message"


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DataRef(_Message):
    """Where the data a step saved lives: inline bytes or an object name.

    Both hold codec-encoded bytes (``iscore.codec``); nobody but the step's
    child process decodes them.
    """

    inline: bytes | None = None
    object: str | None = None
    size_bytes: int = 0


class TriggeredBy(_Message):
    """Who started a run: the manual's ``triggered_by`` entry."""

    application_id: str
    triggered_by: str = "USER"
    step: str | None = None
    task_id: str | None = None
    # A blocking trigger step waits for this run (iscore.trigger).
    blocking: bool = False
    # Set when a schedule started the run (``triggered_by`` "SCHEDULE"):
    # its id and the fire time, epoch seconds.
    schedule_id: str | None = None
    fire_at: float | None = None


class RunRequest(_Message):
    """Ask the planner to start a run (subject ``is.run.request``).

    External systems may publish this themselves; ``run_id`` is then
    optional and the planner makes one. The JetStream message id should
    be the run id so a retried publish starts one run.
    """

    application: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = Field(default=None, pattern=r"^isapp-[0-9a-f-]{36}$")
    triggered_by: list[TriggeredBy] = Field(default_factory=list)
    replay_of: str | None = None
    requested_at: float = Field(default_factory=time.time)


class StepInputRef(_Message):
    """One previous step's data as handed to a step task."""

    step_name: str
    has_data: bool
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: DataRef | None = None


class StepTask(_Message):
    """One attempt of one step, for a worker (subject ``is.task.<queue>``)."""

    task_id: str
    run_id: str
    attempt: int = Field(ge=1)
    application: str
    name: str
    file: str
    source: str
    step_version: int
    entry: dict[str, Any]
    app_variables: dict[str, Any] = Field(default_factory=dict)
    configuration: dict[str, Any] = Field(default_factory=dict)
    inputs: list[StepInputRef] = Field(default_factory=list)
    time_limit_s: float | None = None


class StepStarted(_Message):
    """A worker began an attempt (subject ``is.step.started``)."""

    kind: Literal["started"] = "started"
    task_id: str
    run_id: str
    attempt: int
    worker: str
    started_at: float


class StepLogLine(_Message):
    level: str
    message: str
    at: float


class StepResult(_Message):
    """How an attempt ended (subject ``is.step.result``)."""

    kind: Literal["result"] = "result"
    task_id: str
    run_id: str
    attempt: int
    worker: str
    succeeded: bool
    saved: bool = False
    data: DataRef | None = None
    logs: list[StepLogLine] = Field(default_factory=list)
    logs_truncated_count: int = 0
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    started_at: float
    finished_at: float
    # Rows the step added with add_report_row (successful attempts only).
    report_rows: list[dict[str, Any]] = Field(default_factory=list)


class RetryDue(_Message):
    """A failed step's next attempt, held back until ``due_at`` (epoch s)."""

    task_id: str
    run_id: str
    attempt: int = Field(ge=2)
    due_at: float


class RevokeRequest(_Message):
    """Stop a run or one step task (``target_id``), or every unfinished run."""

    target_id: str | None = None
    all_runs: bool = False
    reason: str = "Revoked by request."


class KillTasks(_Message):
    """Workers kill these running attempts at once (core NATS broadcast)."""

    task_ids: list[str]


class ScheduleChanged(_Message):
    """A schedule was saved or deleted (core NATS ``is.event.schedule``)."""

    schedule_id: str
    deleted: bool = False


class RunEvent(_Message):
    """A run changed state (core NATS ``is.event.run.<run_id>``)."""

    run_id: str
    state: str
    step: str | None = None
    task_id: str | None = None


M = TypeVar("M", bound=_Message)


def encode(message: _Message) -> bytes:
    """Serialise a message model to msgpack bytes."""
    packed: bytes = msgpack.packb(message.model_dump(mode="python"), use_bin_type=True)
    return packed


def decode(data: bytes, model: type[M]) -> M:
    """Parse msgpack ``data`` into ``model``.

    Raises ``MessageInvalidError`` naming the first problem for bytes that
    are not msgpack, not a map, too large, or do not match the model.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageInvalidError(
            f"Message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit."
        )
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as err:  # msgpack raises several unrelated types on junk.  # noqa: BLE001
        raise MessageInvalidError(
            f"Message is not valid msgpack ({type(err).__name__}: {err})."
        ) from err
    if not isinstance(raw, dict):
        raise MessageInvalidError(
            f"Message must be a msgpack map for {model.__name__}, found {type(raw).__name__}."
        )
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(message)"
        raise MessageInvalidError(
            f"Message does not match {model.__name__}: {where}: {first['msg']}.",
            field=where,
        ) from err
