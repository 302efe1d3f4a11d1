"""When a schedule fires, and which fires to start after a scheduler was down.

Times are whole milliseconds since the Unix epoch, so every scheduler
replica computes the same fire times, and so the same run ids, from the
same stored anchor. Pure logic: the caller passes ``now_ms``.

A frequency schedule fires at ``anchor + k * run_every`` for k >= 1, the
anchor being when the schedule was last saved. A crontab schedule fires at
the instants its cron expression yields in its time zone
(``iscore.cron``). The scheduler keeps a cursor per schedule, the latest
fire time it has dealt with; the fires due are those after the cursor and
at or before now.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from iscore.cron import CronExpression
from iscore.models.run import RUN_ID_PREFIX
from iscore.models.schedule import CrontabInfo, FrequencyInfo, Schedule

# Namespace of the run ids derived from a schedule and a fire time.
RUN_ID_NAMESPACE = uuid.UUID("0b7b3f0e-5d7c-4b8e-9a43-2f6f1c2d9e51")


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What to do about the fires due at one moment.

    ``fire_ms`` are the fires to start, ascending; ``late_count`` of them
    are caught-up misfires. ``skipped_count`` misfires are not started.
    ``cursor_ms`` is the latest fire time dealt with, started or not.
    """

    fire_ms: tuple[int, ...]
    late_count: int
    skipped_count: int
    cursor_ms: int


def to_ms(moment: datetime) -> int:
    """An aware datetime as whole milliseconds since the epoch."""
    return round(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def fire_run_id(schedule_id: str, fire_ms: int) -> str:
    """The run id of the fire of ``schedule_id`` at ``fire_ms``.

    Derived, not random: replicas firing the same time publish the same id,
    so JetStream's duplicate window and the planner's one-run-per-id rule
    both drop the copies.
    """
    return f"{RUN_ID_PREFIX}{uuid.uuid5(RUN_ID_NAMESPACE, f'{schedule_id}@{fire_ms}')}"


def fires_after(schedule: Schedule, *, anchor_ms: int, after_ms: int) -> Iterator[int]:
    """Yield the schedule's fire times strictly after ``after_ms``, ascending."""
    info = schedule.schedule.schedule_info
    if isinstance(info, FrequencyInfo):
        period_ms = info.run_every * 1000
        step = max(0, (after_ms - anchor_ms) // period_ms) + 1
        while True:
            yield anchor_ms + step * period_ms
            step += 1
    if not isinstance(info, CrontabInfo):
        raise TypeError(f"Schedule info of type {type(info).__name__} has no fire times.")
    expression = CronExpression.from_fields(info.to_fields(), schedule.timezone)
    for moment in expression.fires_after(from_ms(after_ms)):
        yield to_ms(moment)


def next_fire_ms(schedule: Schedule, *, anchor_ms: int, cursor_ms: int) -> int:
    """The first fire time after ``cursor_ms``."""
    return next(fires_after(schedule, anchor_ms=anchor_ms, after_ms=cursor_ms))


def plan_fires(
    schedule: Schedule, *, anchor_ms: int, cursor_ms: int, now_ms: int
) -> FirePlan | None:
    """Decide which fires in ``(cursor_ms, now_ms]`` start; None when none is due.

    Applies the schedule's misfire policy (``iscore.models.schedule.Misfire``):
    a fire more than ``grace_s`` before ``now_ms`` is a misfire.
    """
    grace_ms = round(schedule.misfire.grace_s * 1000)
    keep_late = schedule.misfire.catch_up_max if schedule.misfire.policy == "catch_up" else 0
    skipped, start_ms = _skip_old_misfires(
        schedule,
        anchor_ms=anchor_ms,
        cursor_ms=cursor_ms,
        late_before_ms=now_ms - grace_ms,
        keep_late=keep_late,
    )
    on_time: list[int] = []
    late: deque[int] = deque(maxlen=keep_late)
    last_due = start_ms
    for fire_ms in fires_after(schedule, anchor_ms=anchor_ms, after_ms=start_ms):
        if fire_ms > now_ms:
            break
        last_due = fire_ms
        if now_ms - fire_ms <= grace_ms:
            on_time.append(fire_ms)
            continue
        if len(late) == keep_late:
            # Only the latest misfires may be caught up; the oldest goes.
            skipped += 1
        late.append(fire_ms)

    if last_due == cursor_ms:
        return None
    return FirePlan(
        fire_ms=(*late, *on_time),
        late_count=len(late),
        skipped_count=skipped,
        cursor_ms=last_due,
    )


def _skip_old_misfires(
    schedule: Schedule, *, anchor_ms: int, cursor_ms: int, late_before_ms: int, keep_late: int
) -> tuple[int, int]:
    """Count, without listing them, misfires too old to catch up; return the new start.

    Only frequency schedules are counted arithmetically; a crontab schedule
    is walked fire by fire in ``plan_fires``.
    """
    info = schedule.schedule.schedule_info
    if not isinstance(info, FrequencyInfo):
        return 0, cursor_ms
    period_ms = info.run_every * 1000
    first = max(0, (cursor_ms - anchor_ms) // period_ms) + 1
    # Fires strictly before late_before_ms are misfires.
    last_late = (late_before_ms - 1 - anchor_ms) // period_ms
    too_old = last_late - first + 1 - keep_late
    if too_old <= 0:
        return 0, cursor_ms
    return too_old, anchor_ms + (first + too_old - 1) * period_ms
