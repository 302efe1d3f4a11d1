"""Entry point of the stepworker service (``is-stepworker``)."""

from __future__ import annotations

import asyncio
import shutil
import signal

import structlog

from iscore.bus import Bus
from iscore.logconfig import setup_logging
from iscore.runtime.pool import ChildPool
from iscore.settings import Settings
from iscore.telemetry import setup_telemetry, shutdown_telemetry
from services.stepworker.worker import StepWorker

log = structlog.get_logger(__name__)
# Seconds a result publish is retried while NATS restarts; past that the
# task is given back and JetStream redelivers it.
PUBLISH_RETRY_S = 20.0


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve step tasks until ``stop`` is set, then finish running steps."""
    bus = await Bus.connect(
        settings.nats_url, name=settings.worker_name, result_expires_s=settings.result_expires_s
    )
    bus.publish_retry_s = PUBLISH_RETRY_S
    pool = ChildPool(
        size=settings.worker_threads,
        limits=settings.child_limits,
        tasks_per_child=settings.tasks_per_child,
    )
    await pool.start()
    worker = StepWorker(bus, pool, settings)
    try:
        await worker.serve(stop)
    finally:
        await pool.close()
        await bus.close()
        shutil.rmtree(worker.scratch, ignore_errors=True)
        log.info("worker_stopped")


def main() -> None:
    settings = Settings.from_env()
    setup_logging("stepworker", settings.log_level)
    setup_telemetry("is-stepworker", settings.otel_exporter)
    asyncio.run(_main(settings))
    shutdown_telemetry()


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
