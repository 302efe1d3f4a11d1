"""Entry point of the planner service (``is-planner``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog
from iscore import subjects
from iscore.bus import Bus
from iscore.consumer import Redeliver, consume, pull_subscription
from iscore.logconfig import setup_logging
from iscore.messages import RetryDue, RevokeRequest, RunRequest, StepResult, StepStarted
from iscore.settings import Settings
from iscore.stores import open_store
from iscore.telemetry import setup_telemetry, shutdown_telemetry
from nats.aio.msg import Msg
from opentelemetry import trace

from services.planner.planner import Planner

log = structlog.get_logger(__name__)
# Seconds a publish is retried while NATS restarts, before the handler fails
# and JetStream redelivers the message it was handling.
PUBLISH_RETRY_S = 20.0
tracer = trace.get_tracer("is.planner")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the planner until ``stop`` is set."""
    store = await open_store(settings.store_url)
    bus = await Bus.connect(
        settings.nats_url, name="is-planner", result_expires_s=settings.result_expires_s
    )
    bus.publish_retry_s = PUBLISH_RETRY_S
    planner = Planner(bus, store)
    reconciled = await planner.reconcile_all()
    log.info("planner_started", nats_url=settings.nats_url, reconciled_run_count=reconciled)

    async def on_run_request(message: Any, _msg: Msg) -> None:
        with tracer.start_as_current_span("plan run", attributes={"application": message.application}):
            await planner.start_run(message)

    async def on_started(message: Any, _msg: Msg) -> None:
        await planner.step_started(message)

    async def on_retry_due(message: Any, _msg: Msg) -> Redeliver | None:
        return await planner.retry_due(message)

    async def on_revoke(message: Any, _msg: Msg) -> None:
        await planner.revoke(message)

    async def on_result(message: Any, _msg: Msg) -> None:
        with tracer.start_as_current_span("accept result", attributes={"run_id": message.run_id}):
            await planner.step_finished(message)

    runs = await pull_subscription(
        bus,
        subject=subjects.RUN_REQUEST,
        durable=subjects.PLANNER_RUNS_CONSUMER,
        stream=subjects.RUNS_STREAM,
    )
    results = await pull_subscription(
        bus,
        subject=subjects.STEP_EVENTS,
        durable=subjects.PLANNER_RESULTS_CONSUMER,
        stream=subjects.RESULTS_STREAM,
    )
    control = await pull_subscription(
        bus,
        subject=subjects.CONTROL_EVENTS,
        durable=subjects.PLANNER_CONTROL_CONSUMER,
        stream=subjects.CONTROL_STREAM,
    )
    try:
        await asyncio.gather(
            _reconcile_periodically(planner, settings, stop),
            consume(
                bus,
                control,
                {
                    subjects.RETRY_DUE: (RetryDue, on_retry_due),
                    subjects.REVOKE_REQUEST: (RevokeRequest, on_revoke),
                },
                stop=stop,
            ),
            consume(bus, runs, {subjects.RUN_REQUEST: (RunRequest, on_run_request)}, stop=stop),
            consume(
                bus,
                results,
                {
                    subjects.STEP_STARTED: (StepStarted, on_started),
                    subjects.STEP_RESULT: (StepResult, on_result),
                },
                stop=stop,
            ),
        )
    finally:
        await bus.close()
        await store.close()
        log.info("planner_stopped")


async def _reconcile_periodically(planner: Planner, settings: Settings, stop: asyncio.Event) -> None:
    """Safety net for step events JetStream lost (ARCHITECTURE.md, reconciler)."""
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.reconcile_interval_s)
        if stop.is_set():
            return
        try:
            await planner.reconcile_lost(older_than_s=settings.reconcile_interval_s)
        except Exception:  # the next round tries again.  # noqa: BLE001
            log.error("reconcile_failed", exc_info=True)


def main() -> None:
    settings = Settings.from_env()
    setup_logging("planner", settings.log_level)
    setup_telemetry("is-planner", settings.otel_exporter)
    asyncio.run(_main(settings))
    shutdown_telemetry()


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
