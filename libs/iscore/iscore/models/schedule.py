"""Schedules in PowerFlow's shape: run an application every N seconds or on a crontab.

A schedule names the application (``application_id``), a schedule entry id
(``entry_id``, also the schedule's id), the run ``params`` and ``schedule``:
``schedule_type`` is ``frequency`` (``schedule_info.run_every`` seconds) or
``crontab`` (``schedule_info`` holds the five cron fields as text). Beside
them: the ``timezone`` crontab fields are read in, ``enabled``, and the
``misfire`` policy for fire times that passed while no scheduler ran.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from iscore.cron import CronInvalidError, check_cron_field
from iscore.errors import IscoreError
from iscore.models._validation import (
    check_bool,
    check_int,
    check_name,
    check_number,
    describe_validation_error,
    expected,
    to_field_path,
)

# One cron field: digits, names (mon, jan), and the characters * , - /
_CRON_FIELD = re.compile(r"[A-Za-z0-9*,\-/]{1,64}")


# How late a fire may be and still count as on time, unless the schedule
# says otherwise (seconds).
DEFAULT_MISFIRE_GRACE_S = 5.0


class ScheduleInvalidError(IscoreError):
    """A schedule document does not have the expected shape."""

    code = "invalid_schedule"


class ScheduleNotFoundError(IscoreError):
    """No schedule has the id asked for."""

    code = "schedule_not_found"

    def __init__(self, schedule_id: str) -> None:
        super().__init__(
            f"Schedule {schedule_id!r} does not exist; list schedules with GET /api/v1/schedule.",
            field="id",
        )
        self.schedule_id = schedule_id


def _check_cron_field(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _CRON_FIELD.fullmatch(value):
        raise expected("expected a cron field such as '*', '5', '*/15' or '1-5'")
    return value


def _check_timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise expected("expected an IANA time zone name such as 'UTC' or 'Europe/Paris'")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise expected("expected an IANA time zone name such as 'UTC' or 'Europe/Paris'") from None
    return value


CronField = Annotated[str, BeforeValidator(_check_cron_field)]


class FrequencyInfo(BaseModel):
    """Run every ``run_every`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_every: Annotated[int, BeforeValidator(check_int(1))]


class CrontabInfo(BaseModel):
    """Run when the clock matches the cron fields (in the schedule's time zone).

    The fields follow Debian's cron, including its rule that a restricted
    day of month and a restricted day of week match when either does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    minute: CronField = "*"
    hour: CronField = "*"
    day_of_month: CronField = "*"
    month_of_year: CronField = "*"
    day_of_week: CronField = "*"

    @field_validator("*")
    @classmethod
    def _check_cron(cls, value: str, info: ValidationInfo) -> str:
        try:
            return check_cron_field(str(info.field_name), value)
        except CronInvalidError:
            raise expected("expected a cron field cron can read, such as '*/15' or '1-5'") from None

    def to_fields(self) -> dict[str, str]:
        """The cron fields by name, for ``iscore.cron.CronExpression``."""
        return self.model_dump()


class ScheduleSpec(BaseModel):
    """When a schedule fires; ``schedule_info`` takes the shape of ``schedule_type``."""

    model_config = ConfigDict(frozen=True)

    schedule_type: Literal["frequency", "crontab"]
    schedule_info: FrequencyInfo | CrontabInfo

    @field_validator("schedule_info", mode="before")
    @classmethod
    def _check_info(cls, value: Any, info: ValidationInfo) -> Any:
        # Chosen by the sibling schedule_type rather than by pydantic's union
        # matching, so an error names the shape the user asked for.
        model = CrontabInfo if info.data.get("schedule_type") == "crontab" else FrequencyInfo
        if isinstance(value, model):
            return value
        try:
            return model.model_validate(value)
        except ValidationError as err:
            raise expected(_inner_phrase(err, model)) from None


def _inner_phrase(err: ValidationError, model: type[BaseModel]) -> str:
    problem = err.errors(include_url=False)[0]
    key = to_field_path(problem["loc"])
    allowed = ", ".join(model.model_fields)
    if problem["type"] == "missing":
        return f"expected a value for {key!r}"
    if problem["type"] == "extra_forbidden":
        return f"expected only the keys {allowed}, not {key!r}"
    if not key:
        return f"expected an object with the keys {allowed}"
    return f"expected {key!r} to be {problem['msg'].removeprefix('expected ')}"


class Misfire(BaseModel):
    """What to do with fire times that passed while no scheduler was running.

    A fire is on time when the scheduler reaches it at most ``grace_s``
    seconds late, and is then always started. Later fires are misfires:
    ``skip`` starts none of them; ``catch_up`` starts the latest
    ``catch_up_max`` of them, oldest first, and skips the rest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["skip", "catch_up"] = "skip"
    catch_up_max: Annotated[int, BeforeValidator(check_int(1))] = 1
    grace_s: Annotated[float, BeforeValidator(check_number(minimum=0, inclusive=False))] = (
        DEFAULT_MISFIRE_GRACE_S
    )

    @model_serializer(mode="wrap")
    def _omit_unused_limit(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A read-back document must upload again: 'catch_up_max' is refused
        # with policy 'skip', so it is not written there.
        data = handler(self)
        if self.policy == "skip" and isinstance(data, dict):
            data.pop("catch_up_max", None)
        return data


def _check_misfire(value: Any) -> Any:
    if isinstance(value, Misfire):
        return value
    if value is None:
        return Misfire()
    try:
        misfire = Misfire.model_validate(value)
    except ValidationError as err:
        raise expected(_inner_phrase(err, Misfire)) from None
    if misfire.policy == "skip" and "catch_up_max" in misfire.model_fields_set:
        raise expected(
            "expected 'catch_up_max' only with policy 'catch_up'",
            "set policy to 'catch_up' or remove catch_up_max",
        )
    return misfire


class Schedule(BaseModel):
    """A schedule entry for one application; extra keys are kept.

    Its id is ``entry_id``; a document may repeat it as ``id``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    application_id: Annotated[str, BeforeValidator(check_name)]
    entry_id: Annotated[str, BeforeValidator(check_name)]
    # Declared after entry_id, which its check compares it with.
    id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    schedule: ScheduleSpec
    timezone: Annotated[str, BeforeValidator(_check_timezone)] = "UTC"
    enabled: Annotated[bool, BeforeValidator(check_bool)] = True
    misfire: Annotated[Misfire, BeforeValidator(_check_misfire)] = Field(default_factory=Misfire)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        entry_id = info.data.get("entry_id")
        if value is not None and entry_id is not None and value != entry_id:
            raise expected(
                f"expected the same value as entry_id {entry_id!r}",
                "a schedule's id is its entry_id; leave id out",
            )
        return value

    @property
    def schedule_id(self) -> str:
        """The schedule's id: its ``entry_id``."""
        return self.entry_id

    @classmethod
    def from_document(cls, document: Any) -> Schedule:
        """Validate a schedule document; raises ``ScheduleInvalidError``."""
        if not isinstance(document, dict):
            raise ScheduleInvalidError(
                f"A schedule must be a JSON object, found {type(document).__name__}.",
                field="document",
            )
        try:
            return cls.model_validate(document)
        except ValidationError as err:
            message, field = describe_validation_error(err)
            raise ScheduleInvalidError(message, field=field) from err

    def to_document(self) -> dict[str, Any]:
        """The document as uploaded: extra keys kept, unset defaults left out."""
        return self.model_dump(exclude_unset=True)


class ScheduleRecord(BaseModel):
    """A stored schedule with the scheduler's bookkeeping.

    ``revision`` counts saves from 1. Saving resets ``anchor_ms`` (where
    frequency fire times count from) and ``cursor_ms`` (the latest fire
    time dealt with) to the moment of the save, so a changed schedule never
    fires for time before the change. ``pending_fire_ms`` are fires a
    scheduler claimed and has not yet confirmed as published; any replica
    publishes them (again) before claiming more, the derived run ids making
    a second publication harmless.
    Times are milliseconds since the Unix epoch.
    """

    model_config = ConfigDict(frozen=True)

    schedule_id: str
    revision: int = Field(ge=1)
    document: dict[str, Any]
    created_at: AwareDatetime
    updated_at: AwareDatetime
    anchor_ms: int
    cursor_ms: int
    pending_fire_ms: list[int] = Field(default_factory=list)
    fire_count: int = 0
    late_count: int = 0
    skipped_count: int = 0
    last_fire_ms: int | None = None

    def to_schedule(self) -> Schedule:
        """The stored document as a ``Schedule`` (validated when it was saved)."""
        return Schedule.model_validate(self.document)
