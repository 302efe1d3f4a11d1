"""Schedules in PowerFlow's shape: run an application every N seconds or on a crontab.

A schedule names the application (``application_id``), a schedule entry id
(``entry_id``), the run ``params`` and ``schedule``: ``schedule_type`` is
``frequency`` (``schedule_info.run_every`` seconds) or ``crontab``
(``schedule_info`` holds the five cron fields as text).
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from iscore.errors import IscoreError
from iscore.models._validation import (
    check_bool,
    check_int,
    describe_validation_error,
    expected,
    to_field_path,
)

# One cron field: digits, names (mon, jan), and the characters * , - /
_CRON_FIELD = re.compile(r"[A-Za-z0-9*,\-/]{1,64}")


class ScheduleInvalidError(IscoreError):
    """A schedule document does not have the expected shape."""

    code = "invalid_schedule"


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
    """Run when the clock matches all five cron fields (in the schedule's time zone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minute: CronField = "*"
    hour: CronField = "*"
    day_of_month: CronField = "*"
    month_of_year: CronField = "*"
    day_of_week: CronField = "*"


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


class Schedule(BaseModel):
    """A schedule entry for one application; extra keys are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None
    application_id: str = Field(min_length=1)
    entry_id: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    schedule: ScheduleSpec
    timezone: Annotated[str, BeforeValidator(_check_timezone)] = "UTC"
    enabled: Annotated[bool, BeforeValidator(check_bool)] = True

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
