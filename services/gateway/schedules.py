"""Schedules: timed runs of an application (manual, "Available Endpoints").

``POST /schedule`` creates or replaces a schedule (its id is ``entry_id``),
``GET /schedule`` lists them with their next fire time and counters, and
``DELETE /schedule/{id}`` or ``DELETE /schedule?id=`` removes one
(MANUAL-NOTES 4). Every change is announced on NATS so schedulers apply
it at once.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, delete, get, post
from litestar.params import Parameter

from iscore import subjects
from iscore.bus import Bus
from iscore.messages import ScheduleChanged, encode
from iscore.models.schedule import (
    Schedule,
    ScheduleInvalidError,
    ScheduleNotFoundError,
    ScheduleRecord,
)
from iscore.preparation import ApplicationMissingError, prepare_run
from iscore.stores.base import Store
from iscore.timetable import from_ms, next_fire_ms
from services.gateway.jsonbody import read_json

log = structlog.get_logger(__name__)

# Largest page of GET /schedule.
MAX_LIMIT = 1000


def schedule_document(record: ScheduleRecord) -> dict[str, Any]:
    """A schedule as the API shows it, defaults filled in, with its bookkeeping.

    Adds when it fires next (null while disabled), when it last fired, and
    how many fires it started, caught up late and skipped as misfires.
    """
    schedule = record.to_schedule()
    next_at = None
    if schedule.enabled:
        upcoming = next_fire_ms(schedule, anchor_ms=record.anchor_ms, cursor_ms=record.cursor_ms)
        next_ms = min([*record.pending_fire_ms, upcoming])
        next_at = from_ms(next_ms).isoformat()
    return {
        **schedule.model_dump(),
        "id": record.schedule_id,
        "revision": record.revision,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "next_fire_at": next_at,
        "last_fire_at": from_ms(record.last_fire_ms).isoformat() if record.last_fire_ms else None,
        "fire_count": record.fire_count,
        "late_count": record.late_count,
        "skipped_count": record.skipped_count,
    }


async def _announce(bus: Bus, change: ScheduleChanged) -> None:
    try:
        await bus.nc.publish(subjects.SCHEDULE_EVENT, encode(change))
    except Exception:  # core NATS publish: any failure is the same to us.
        # Schedulers also re-read every schedule each second, so the change
        # still applies; only the immediate wake-up is lost.
        log.warning("schedule_change_not_announced", schedule_id=change.schedule_id, exc_info=True)


async def _check_runnable(store: Store, schedule: Schedule) -> None:
    # A disabled schedule starts nothing, so it may name an application
    # that is gone (disabling is how one stops such a schedule firing).
    if not schedule.enabled:
        return
    try:
        await prepare_run(store, schedule.application_id, schedule.params)
    except ApplicationMissingError as err:
        raise ScheduleInvalidError(
            f"application_id: application {schedule.application_id!r} is not defined; "
            "upload it with POST /api/v1/applications before scheduling it.",
            field="application_id",
        ) from err


@post("/schedule", status_code=200)
async def save_schedule(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Create a schedule, or replace the one with the same ``entry_id``."""
    store: Store = request.app.state.store
    schedule = Schedule.from_document(await read_json(request))
    await _check_runnable(store, schedule)
    record = await store.put_schedule(schedule.schedule_id, schedule.to_document())
    log.info(
        "schedule_saved",
        schedule_id=record.schedule_id,
        revision=record.revision,
        application=schedule.application_id,
    )
    await _announce(request.app.state.bus, ScheduleChanged(schedule_id=record.schedule_id))
    return schedule_document(record)


@get("/schedule")
async def list_schedules(
    request: Request[Any, Any, Any], offset: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Every schedule, by id."""
    store: Store = request.app.state.store
    records = await store.list_schedules(offset=max(0, offset), limit=min(max(limit, 1), MAX_LIMIT))
    return [schedule_document(record) for record in records]


@get("/schedule/{schedule_id:str}")
async def get_schedule(request: Request[Any, Any, Any], schedule_id: str) -> dict[str, Any]:
    """One schedule."""
    record = await request.app.state.store.get_schedule(schedule_id)
    if record is None:
        raise ScheduleNotFoundError(schedule_id)
    return schedule_document(record)


async def _delete(request: Request[Any, Any, Any], schedule_id: str) -> dict[str, Any]:
    if not await request.app.state.store.delete_schedule(schedule_id):
        raise ScheduleNotFoundError(schedule_id)
    log.info("schedule_deleted", schedule_id=schedule_id)
    await _announce(request.app.state.bus, ScheduleChanged(schedule_id=schedule_id, deleted=True))
    return {"id": schedule_id, "deleted": True}


@delete("/schedule/{schedule_id:str}", status_code=200)
async def delete_schedule(request: Request[Any, Any, Any], schedule_id: str) -> dict[str, Any]:
    """Delete a schedule by id."""
    return await _delete(request, schedule_id)


@delete("/schedule", status_code=200)
async def delete_schedule_by_query(
    request: Request[Any, Any, Any],
    schedule_id: str = Parameter(query="id", min_length=1, description="The schedule's id."),
) -> dict[str, Any]:
    """Delete a schedule named by the ``id`` query parameter (MANUAL-NOTES 4)."""
    return await _delete(request, schedule_id)


ROUTES = [save_schedule, list_schedules, get_schedule, delete_schedule, delete_schedule_by_query]
