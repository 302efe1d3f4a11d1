"""Fire times of schedules and the misfire policy, with an injected clock."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscore.models.schedule import Schedule
from iscore.timetable import fire_run_id, fires_after, next_fire_ms, plan_fires, to_ms
from tests.scheduler.test_cron import utc

ANCHOR_MS = 1_700_000_000_000
SECOND_MS = 1000


def frequency(run_every: int, **misfire: Any) -> Schedule:
    document: dict[str, Any] = {
        "application_id": "nightly",
        "entry_id": "every",
        "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": run_every}},
    }
    if misfire:
        document["misfire"] = misfire
    return Schedule.from_document(document)


def crontab(info: dict[str, str], timezone: str = "UTC", **misfire: Any) -> Schedule:
    document: dict[str, Any] = {
        "application_id": "nightly",
        "entry_id": "cron",
        "timezone": timezone,
        "schedule": {"schedule_type": "crontab", "schedule_info": info},
    }
    if misfire:
        document["misfire"] = misfire
    return Schedule.from_document(document)


def reference_plan(schedule: Schedule, cursor_ms: int, now_ms: int) -> tuple[list[int], int]:
    """The misfire policy spelled out the slow way: every due fire listed."""
    due = []
    for fire_ms in fires_after(schedule, anchor_ms=ANCHOR_MS, after_ms=cursor_ms):
        if fire_ms > now_ms:
            break
        due.append(fire_ms)
    grace_ms = round(schedule.misfire.grace_s * 1000)
    late = [f for f in due if now_ms - f > grace_ms]
    on_time = [f for f in due if now_ms - f <= grace_ms]
    keep = schedule.misfire.catch_up_max if schedule.misfire.policy == "catch_up" else 0
    kept = late[max(0, len(late) - keep) :] if keep else []
    return kept + on_time, len(late) - len(kept)


def test_frequency_schedule_fires_every_run_every_seconds_from_its_anchor() -> None:
    fires = fires_after(frequency(60), anchor_ms=ANCHOR_MS, after_ms=ANCHOR_MS)

    assert [next(fires) for _ in range(3)] == [ANCHOR_MS + k * 60 * SECOND_MS for k in (1, 2, 3)]


def test_next_fire_after_a_cursor_between_fires_is_the_following_grid_point() -> None:
    assert next_fire_ms(frequency(10), anchor_ms=ANCHOR_MS, cursor_ms=ANCHOR_MS + 25_000) == (
        ANCHOR_MS + 30_000
    )


def test_fire_run_id_is_the_same_for_the_same_fire_and_differs_otherwise() -> None:
    first = fire_run_id("nightly", ANCHOR_MS)

    assert first == fire_run_id("nightly", ANCHOR_MS)
    assert first != fire_run_id("nightly", ANCHOR_MS + 1)
    assert first != fire_run_id("hourly", ANCHOR_MS)
    assert re.fullmatch(r"isapp-[0-9a-f-]{36}", first)


def test_nothing_is_due_before_the_first_fire() -> None:
    plan = plan_fires(
        frequency(5), anchor_ms=ANCHOR_MS, cursor_ms=ANCHOR_MS, now_ms=ANCHOR_MS + 4_999
    )

    assert plan is None


def test_a_fire_reached_within_the_grace_is_started_on_time() -> None:
    plan = plan_fires(
        frequency(5), anchor_ms=ANCHOR_MS, cursor_ms=ANCHOR_MS, now_ms=ANCHOR_MS + 5_200
    )

    assert plan is not None
    assert (plan.fire_ms, plan.late_count, plan.skipped_count) == ((ANCHOR_MS + 5_000,), 0, 0)
    assert plan.cursor_ms == ANCHOR_MS + 5_000


def test_skip_policy_starts_only_the_fires_within_the_grace_after_downtime() -> None:
    schedule = frequency(1, policy="skip", grace_s=2)

    # Down for 10 s: fires 1..10 are due, 8, 9 and 10 are within 2 s of now.
    plan = plan_fires(schedule, anchor_ms=ANCHOR_MS, cursor_ms=ANCHOR_MS, now_ms=ANCHOR_MS + 10_000)

    assert plan is not None
    assert plan.fire_ms == tuple(ANCHOR_MS + k * SECOND_MS for k in (8, 9, 10))
    assert (plan.late_count, plan.skipped_count, plan.cursor_ms) == (0, 7, ANCHOR_MS + 10_000)


def test_catch_up_policy_starts_the_latest_misfires_oldest_first() -> None:
    schedule = frequency(60, policy="catch_up", catch_up_max=3)

    plan = plan_fires(
        schedule, anchor_ms=ANCHOR_MS, cursor_ms=ANCHOR_MS, now_ms=ANCHOR_MS + 10 * 60_000 + 30_000
    )

    assert plan is not None
    assert plan.fire_ms == tuple(ANCHOR_MS + k * 60_000 for k in (8, 9, 10))
    assert (plan.late_count, plan.skipped_count) == (3, 7)


def test_catch_up_policy_starts_every_misfire_when_fewer_than_its_maximum() -> None:
    schedule = frequency(60, policy="catch_up", catch_up_max=5)

    plan = plan_fires(
        schedule, anchor_ms=ANCHOR_MS, cursor_ms=ANCHOR_MS, now_ms=ANCHOR_MS + 2 * 60_000 + 30_000
    )

    assert plan is not None
    assert plan.fire_ms == (ANCHOR_MS + 60_000, ANCHOR_MS + 120_000)
    assert (plan.late_count, plan.skipped_count) == (2, 0)


def test_skip_policy_moves_the_cursor_even_when_every_due_fire_is_skipped() -> None:
    plan = plan_fires(
        frequency(60),
        anchor_ms=ANCHOR_MS,
        cursor_ms=ANCHOR_MS,
        now_ms=ANCHOR_MS + 3 * 60_000 + 30_000,
    )

    assert plan is not None
    assert (plan.fire_ms, plan.skipped_count, plan.cursor_ms) == ((), 3, ANCHOR_MS + 180_000)


def test_a_year_of_downtime_of_a_one_second_schedule_is_planned_without_listing_it() -> None:
    schedule = frequency(1, policy="catch_up", catch_up_max=2, grace_s=1)
    year_ms = 365 * 86_400 * SECOND_MS

    plan = plan_fires(
        schedule, anchor_ms=ANCHOR_MS, cursor_ms=ANCHOR_MS, now_ms=ANCHOR_MS + year_ms
    )

    assert plan is not None
    assert plan.fire_ms == tuple(ANCHOR_MS + year_ms - k * SECOND_MS for k in (3, 2, 1, 0))
    assert (plan.late_count, plan.skipped_count) == (2, year_ms // SECOND_MS - 4)


def test_crontab_misfires_follow_the_policy_across_a_dst_change() -> None:
    schedule = crontab({"minute": "0"}, "Europe/Paris", policy="catch_up", catch_up_max=2)
    cursor_ms = to_ms(utc(2024, 10, 26, 21))

    # Down from 23:00 to 05:00 Paris time, through the night the clock falls
    # back: fires at 22:00-03:00 UTC are late, the one at 04:00 on time.
    plan = plan_fires(
        schedule, anchor_ms=cursor_ms, cursor_ms=cursor_ms, now_ms=to_ms(utc(2024, 10, 27, 4, 0, 3))
    )

    assert plan is not None
    assert plan.fire_ms == tuple(to_ms(utc(2024, 10, 27, h)) for h in (2, 3, 4))
    assert (plan.late_count, plan.skipped_count) == (2, 4)


@settings(max_examples=300, deadline=None)
@given(
    run_every=st.integers(1, 120),
    cursor_offset_s=st.integers(0, 600),
    downtime_s=st.integers(0, 3_000),
    policy=st.sampled_from(["skip", "catch_up"]),
    catch_up_max=st.integers(1, 6),
    grace_s=st.integers(1, 30),
)
def test_frequency_plan_matches_listing_every_due_fire(
    run_every: int,
    cursor_offset_s: int,
    downtime_s: int,
    policy: str,
    catch_up_max: int,
    grace_s: int,
) -> None:
    misfire: dict[str, Any] = {"policy": policy, "grace_s": grace_s}
    if policy == "catch_up":
        misfire["catch_up_max"] = catch_up_max
    schedule = frequency(run_every, **misfire)
    cursor_ms = ANCHOR_MS + cursor_offset_s * SECOND_MS
    now_ms = cursor_ms + downtime_s * SECOND_MS + 137

    plan = plan_fires(schedule, anchor_ms=ANCHOR_MS, cursor_ms=cursor_ms, now_ms=now_ms)

    fires, skipped = reference_plan(schedule, cursor_ms, now_ms)
    if plan is None:
        assert (fires, skipped) == ([], 0)
    else:
        assert (list(plan.fire_ms), plan.skipped_count) == (fires, skipped)
        assert plan.late_count == sum(1 for f in fires if now_ms - f > grace_s * SECOND_MS)


@pytest.mark.parametrize("policy", ["skip", "catch_up"])
def test_crontab_plan_matches_listing_every_due_fire(policy: str) -> None:
    misfire: dict[str, Any] = {"policy": policy, "grace_s": 90}
    if policy == "catch_up":
        misfire["catch_up_max"] = 4
    schedule = crontab({"minute": "*/7"}, "America/New_York", **misfire)
    cursor_ms = to_ms(utc(2024, 11, 3, 4))
    now_ms = to_ms(utc(2024, 11, 3, 8, 3))

    plan = plan_fires(schedule, anchor_ms=cursor_ms, cursor_ms=cursor_ms, now_ms=now_ms)

    assert plan is not None
    assert (list(plan.fire_ms), plan.skipped_count) == reference_plan(schedule, cursor_ms, now_ms)
