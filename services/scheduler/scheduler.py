"""The scheduler: turns due schedule fires into run requests.

Several replicas may run against one store and one NATS. Each fire is
first claimed in the store (a compare-and-set on the schedule's cursor),
then published, then confirmed; a fire claimed but not confirmed is
published again by whichever replica sees it next. Copies cannot start a
second run: the run id and the JetStream message id are derived from the
schedule and the fire time (``iscore.timetable.fire_run_id``), so
JetStream drops copies inside its duplicate window and the planner's
one-run-per-id rule drops any later ones (ARCHITECTURE.md, "Shape").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from iscore import subjects
from iscore.bus import Bus
from iscore.messages import RunRequest, TriggeredBy
from iscore.models.schedule import Schedule, ScheduleRecord
from iscore.stores.base import Store
from iscore.timetable import FirePlan, fire_run_id, next_fire_ms, plan_fires

log = structlog.get_logger(__name__)

# Every schedule is re-read this often even without a change announcement,
# so a change applies within this time however it was made (seconds).
RELOAD_INTERVAL_S = 1.0
# Page size when reading every schedule.
RELOAD_PAGE = 1000
# Pause after a failure to publish or to reach the store (seconds).
FAILURE_PAUSE_S = 0.5


class Scheduler:
    """Keeps every schedule in memory and fires the due ones.

    ``clock`` returns epoch seconds; tests pass their own.
    """

    def __init__(self, bus: Bus, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.store = store
        self.clock = clock
        self._records: dict[str, ScheduleRecord] = {}
        self._parsed: dict[tuple[str, int], Schedule] = {}
        self._wake = asyncio.Event()
        self._reload_wanted = True

    def request_reload(self) -> None:
        """Re-read every schedule before the next fire, and wake up now."""
        self._reload_wanted = True
        self._wake.set()

    async def reload(self) -> None:
        """Read every schedule from the store."""
        records: dict[str, ScheduleRecord] = {}
        offset = 0
        while True:
            page = await self.store.list_schedules(offset=offset, limit=RELOAD_PAGE)
            records.update((record.schedule_id, record) for record in page)
            if len(page) < RELOAD_PAGE:
                break
            offset += RELOAD_PAGE
        self._records = records
        self._parsed = {key: s for key, s in self._parsed.items() if key[0] in records}
        self._reload_wanted = False

    async def tick(self) -> None:
        """Publish every fire due now, schedule by schedule."""
        now_ms = round(self.clock() * 1000)
        for schedule_id in list(self._records):
            record = self._records.get(schedule_id)
            if record is not None:
                await self.fire_due(record, now_ms)

    async def fire_due(self, record: ScheduleRecord, now_ms: int) -> None:
        """Finish earlier claims of ``record``, then claim and publish its due fires."""
        if record.pending_fire_ms:
            record = await self._publish_pending(record)
            if record.pending_fire_ms:
                return
        schedule = self._schedule(record)
        if not schedule.enabled:
            return
        plan = plan_fires(
            schedule, anchor_ms=record.anchor_ms, cursor_ms=record.cursor_ms, now_ms=now_ms
        )
        if plan is None:
            return

        claimed = await self.store.claim_schedule_fires(
            record.schedule_id,
            revision=record.revision,
            expected_cursor_ms=record.cursor_ms,
            cursor_ms=plan.cursor_ms,
            fire_ms=plan.fire_ms,
            late_count=plan.late_count,
            skipped_count=plan.skipped_count,
        )
        if not claimed:
            # Another replica claimed these fires, or the schedule changed.
            await self._refresh(record.schedule_id)
            return
        self._log_misfires(record, plan)
        record = record.model_copy(
            update={"cursor_ms": plan.cursor_ms, "pending_fire_ms": list(plan.fire_ms)}
        )
        self._records[record.schedule_id] = record
        await self._publish_pending(record)

    def seconds_until_due(self) -> float:
        """Time until the earliest fire of any enabled schedule (seconds)."""
        now_ms = self.clock() * 1000
        earliest: float | None = None
        for record in self._records.values():
            if record.pending_fire_ms:
                return 0.0
            schedule = self._schedule(record)
            if not schedule.enabled:
                continue
            due = next_fire_ms(schedule, anchor_ms=record.anchor_ms, cursor_ms=record.cursor_ms)
            earliest = due if earliest is None else min(earliest, due)
        if earliest is None:
            return RELOAD_INTERVAL_S
        return max(0.0, (earliest - now_ms) / 1000)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire schedules until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        reload_at = loop.time()
        while not stop.is_set():
            delay = RELOAD_INTERVAL_S
            try:
                if self._reload_wanted or loop.time() >= reload_at:
                    await self.reload()
                    reload_at = loop.time() + RELOAD_INTERVAL_S
                await self.tick()
                delay = min(self.seconds_until_due(), reload_at - loop.time())
            except Exception:  # one bad pass must not stop the scheduler.
                log.exception("schedule_pass_failed")
                delay = FAILURE_PAUSE_S
            await self._sleep(stop, max(delay, 0.0))

    async def _sleep(self, stop: asyncio.Event, delay_s: float) -> None:
        if self._reload_wanted:
            # A change was announced during the pass: apply it now.
            return
        self._wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _publish_pending(self, record: ScheduleRecord) -> ScheduleRecord:
        schedule = self._schedule(record)
        for fire_ms in record.pending_fire_ms:
            await self._publish(record.schedule_id, schedule, fire_ms)
        confirmed = await self.store.confirm_schedule_fires(
            record.schedule_id, fire_ms=record.pending_fire_ms
        )
        if not confirmed:
            return await self._refresh(record.schedule_id) or record
        last = max([*record.pending_fire_ms, record.last_fire_ms or 0])
        updated = record.model_copy(update={"pending_fire_ms": [], "last_fire_ms": last})
        self._records[record.schedule_id] = updated
        return updated

    async def _publish(self, schedule_id: str, schedule: Schedule, fire_ms: int) -> None:
        run_id = fire_run_id(schedule_id, fire_ms)
        request = RunRequest(
            application=schedule.application_id,
            params=schedule.params,
            run_id=run_id,
            triggered_by=[
                TriggeredBy(
                    application_id=run_id,
                    triggered_by="SCHEDULE",
                    schedule_id=schedule_id,
                    fire_at=fire_ms / 1000,
                )
            ],
        )
        await self.bus.publish(subjects.RUN_REQUEST, request, msg_id=run_id)
        log.info("schedule_fired", schedule_id=schedule_id, run_id=run_id, fire_ms=fire_ms)

    async def _refresh(self, schedule_id: str) -> ScheduleRecord | None:
        record = await self.store.get_schedule(schedule_id)
        if record is None:
            self._records.pop(schedule_id, None)
            return None
        self._records[schedule_id] = record
        return record

    def _schedule(self, record: ScheduleRecord) -> Schedule:
        key = (record.schedule_id, record.revision)
        schedule = self._parsed.get(key)
        if schedule is None:
            schedule = self._parsed[key] = record.to_schedule()
        return schedule

    def _log_misfires(self, record: ScheduleRecord, plan: FirePlan) -> None:
        if not (plan.late_count or plan.skipped_count):
            return
        log.warning(
            "schedule_misfired",
            schedule_id=record.schedule_id,
            caught_up_count=plan.late_count,
            skipped_count=plan.skipped_count,
            policy=self._schedule(record).misfire.policy,
        )
