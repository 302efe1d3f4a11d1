"""Cron expressions in a time zone, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

import pytest

from iscore.cron import CronExpression, CronInvalidError, check_cron_field

PARIS = "Europe/Paris"


def fires_between(expression: CronExpression, start: datetime, end: datetime) -> list[datetime]:
    fires = []
    for moment in expression.fires_after(start):
        if moment > end:
            return fires
        fires.append(moment)
    return fires


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_fixed_time_entry_fires_once_when_the_clock_falls_back() -> None:
    expression = CronExpression.from_fields({"minute": "30", "hour": "2"}, PARIS)

    fires = fires_between(expression, utc(2024, 10, 26, 12), utc(2024, 10, 28, 12))

    # 02:30 happens twice on 27 October in Paris; the entry fires at the first.
    assert fires == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]


def test_fixed_time_entry_fires_right_after_a_spring_forward_gap() -> None:
    expression = CronExpression.from_fields({"minute": "30", "hour": "2"}, PARIS)

    fires = fires_between(expression, utc(2024, 3, 30, 12), utc(2024, 4, 1, 12))

    # 02:30 does not exist on 31 March in Paris: the clock jumps 02:00 -> 03:00.
    assert fires == [utc(2024, 3, 31, 1, 0), utc(2024, 4, 1, 0, 30)]


def test_hourly_entry_fires_each_real_hour_through_the_overlap_once() -> None:
    expression = CronExpression.from_fields({"minute": "0"}, PARIS)

    fires = fires_between(expression, utc(2024, 10, 26, 22, 30), utc(2024, 10, 27, 3, 30))

    assert fires == [utc(2024, 10, 26, 23) + timedelta(hours=h) for h in range(5)]


def test_hourly_entry_skips_no_real_hour_in_a_spring_forward_gap() -> None:
    expression = CronExpression.from_fields({"minute": "0"}, PARIS)

    fires = fires_between(expression, utc(2024, 3, 30, 22, 30), utc(2024, 3, 31, 3, 30))

    assert fires == [utc(2024, 3, 30, 23) + timedelta(hours=h) for h in range(5)]


@pytest.mark.parametrize(
    ("fields", "zone", "start"),
    [
        ({"minute": "30", "hour": "2"}, PARIS, utc(2024, 10, 25)),
        ({"minute": "30", "hour": "2"}, PARIS, utc(2024, 3, 29)),
        ({"minute": "*/20"}, PARIS, utc(2024, 10, 26, 23, 30)),
        ({"minute": "15,45", "hour": "1-3"}, "America/New_York", utc(2024, 11, 2)),
        ({"minute": "15,45", "hour": "1-3"}, "America/New_York", utc(2024, 3, 9)),
        ({"minute": "0,30", "hour": "1,2"}, "Australia/Lord_Howe", utc(2024, 4, 5)),
        ({"minute": "0,30", "hour": "1,2"}, "Australia/Lord_Howe", utc(2024, 10, 4)),
    ],
)
def test_resuming_at_any_minute_gives_the_same_fires_as_one_walk(
    fields: dict[str, str], zone: str, start: datetime
) -> None:
    expression = CronExpression.from_fields(fields, zone)
    walk = list(islice(expression.fires_after(start), 12))

    for minutes in range(0, int((walk[-2] - start).total_seconds() // 60), 7):
        resume_at = start + timedelta(minutes=minutes)
        expected = [moment for moment in walk if moment > resume_at][:3]

        resumed = list(islice(expression.fires_after(resume_at), len(expected)))

        assert resumed == expected, f"resumed at {resume_at.isoformat()}"


def test_fire_times_are_strictly_increasing() -> None:
    expression = CronExpression.from_fields({"minute": "*/30"}, PARIS)

    fires = list(islice(expression.fires_after(utc(2024, 10, 26, 20)), 30))

    assert all(earlier < later for earlier, later in pairwise(fires))


def test_unreadable_cron_field_is_refused_naming_it() -> None:
    with pytest.raises(CronInvalidError) as caught:
        check_cron_field("minute", "99")

    assert caught.value.field == "minute"
    assert "'99'" in str(caught.value)


def test_expression_that_never_fires_is_refused() -> None:
    with pytest.raises(CronInvalidError, match="never fires"):
        CronExpression.from_fields({"day_of_month": "30", "month_of_year": "2"})


def test_fires_after_refuses_a_naive_datetime() -> None:
    expression = CronExpression.from_fields({"minute": "0"})

    with pytest.raises(ValueError, match="aware"):
        next(expression.fires_after(datetime(2024, 1, 1)))  # noqa: DTZ001
