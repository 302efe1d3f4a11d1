"""Entry point of the scheduler service (``is-scheduler``)."""

from __future__ import annotations

import asyncio
import signal

import structlog
from nats.aio.msg import Msg

from iscore import subjects
from iscore.bus import Bus
from iscore.logconfig import setup_logging
from iscore.messages import MessageInvalidError, ScheduleChanged, decode
from iscore.settings import Settings
from iscore.stores import open_store
from iscore.telemetry import setup_telemetry, shutdown_telemetry
from services.scheduler.scheduler import Scheduler

log = structlog.get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the scheduler until ``stop`` is set."""
    store = await open_store(settings.store_url)
    bus = await Bus.connect(
        settings.nats_url, name="is-scheduler", result_expires_s=settings.result_expires_s
    )
    scheduler = Scheduler(bus, store)

    async def on_change(msg: Msg) -> None:
        # The store holds the truth: any announcement, even a garbled one,
        # means "re-read the schedules now".
        try:
            change = decode(msg.data, ScheduleChanged)
        except MessageInvalidError as err:
            log.warning("schedule_change_invalid", reason=str(err))
        else:
            log.debug(
                "schedule_change_received", schedule_id=change.schedule_id, deleted=change.deleted
            )
        scheduler.request_reload()

    changes = await bus.nc.subscribe(subjects.SCHEDULE_EVENT, cb=on_change)
    log.info("scheduler_started", nats_url=settings.nats_url)
    try:
        await scheduler.run(stop)
    finally:
        await changes.unsubscribe()
        await bus.close()
        await store.close()
        log.info("scheduler_stopped")


def main() -> None:
    settings = Settings.from_env()
    setup_logging("scheduler", settings.log_level)
    setup_telemetry("is-scheduler", settings.otel_exporter)
    asyncio.run(_main(settings))
    shutdown_telemetry()


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
