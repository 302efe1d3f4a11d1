"""Cron expressions of crontab schedules: checking them and listing fire times.

Parsing and the daylight-saving rules come from cronsim, which follows
Debian's cron: an entry with a fixed hour fires once when the clock falls
back and, when the clock springs forward over its time, right after the
jump; entries with a wildcard hour fire at every real instant that matches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from iscore.errors import IscoreError

# The crontab fields of a PowerFlow schedule, in cron's column order.
FIELD_NAMES = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")

# Any aware instant works to check an expression; this one is fixed so a
# check never depends on the clock.
_PROBE_AT = datetime(2000, 1, 1, tzinfo=UTC)


class CronInvalidError(IscoreError):
    """A cron field or a whole cron expression cannot be used."""

    code = "invalid_schedule"


def check_cron_field(name: str, value: str) -> str:
    """Return ``value`` if it is a valid cron field ``name``.

    Raises ``CronInvalidError`` naming the field otherwise.
    """
    if name not in FIELD_NAMES:
        raise CronInvalidError(
            f"Cron field {name!r} is unknown; use one of {', '.join(FIELD_NAMES)}.", field=name
        )
    columns = ["*"] * len(FIELD_NAMES)
    columns[FIELD_NAMES.index(name)] = value
    try:
        CronSim(" ".join(columns), _PROBE_AT)
    except CronSimError as err:
        raise CronInvalidError(
            f"Cron field {name!r} is {value!r}, which cron cannot read ({err}).", field=name
        ) from err
    return value


@dataclass(frozen=True, slots=True)
class CronExpression:
    """Five cron fields read in a time zone."""

    text: str
    zone: ZoneInfo

    @classmethod
    def from_fields(cls, fields: Mapping[str, str], timezone: str = "UTC") -> CronExpression:
        """Build the expression from PowerFlow's named fields (absent ones are ``*``).

        Raises ``CronInvalidError`` for a field cron cannot read or for an
        expression that never fires (such as the 31st of February).
        """
        for name, value in fields.items():
            check_cron_field(name, value)
        text = " ".join(fields.get(name, "*") for name in FIELD_NAMES)
        expression = cls(text, ZoneInfo(timezone))
        try:
            next(CronSim(text, _PROBE_AT))
        except (CronSimError, StopIteration) as err:
            raise CronInvalidError(
                f"Cron expression {text!r} never fires; check the day and month fields.",
                field="day_of_month",
            ) from err
        return expression

    def fires_after(self, after: datetime) -> Iterator[datetime]:
        """Yield the fire times strictly after ``after``, ascending, as aware UTC.

        Never yields an instant twice: cronsim may hand back a time at or
        before its start when it starts inside a fall-back overlap, and
        such times are dropped here.
        """
        if after.tzinfo is None:
            raise ValueError("fires_after needs an aware datetime.")
        latest = after.astimezone(UTC)
        for local in CronSim(self.text, latest.astimezone(self.zone)):
            instant = local.astimezone(UTC)
            if instant <= latest:
                continue
            latest = instant
            yield instant
