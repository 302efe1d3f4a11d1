"""A thin JetStream pull-consumer loop: receive, decode, handle, ack.

Malformed messages go to the dead-letter stream with the reason and are
acknowledged; an unexpected handler error is logged once and the message
is left for redelivery (``nak`` with a delay), never crashing the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import context as otel_context

from iscore.bus import Bus
from iscore.messages import MessageInvalidError, _Message, decode
from iscore.telemetry import extract_context

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=_Message)


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Returned by a handler: leave the message for later instead of acking.

    JetStream redelivers it after ``delay_s``; this is how due times (a
    retry's countdown) survive restarts without a sleeping process.
    """

    delay_s: float


Handler = Callable[[Any, Msg], Awaitable["Redeliver | None"]]

# Delay before a message whose handler failed unexpectedly is tried again.
HANDLER_RETRY_DELAY_S = 2.0


async def pull_subscription(
    bus: Bus,
    *,
    subject: str,
    durable: str,
    stream: str,
    ack_wait_s: float = 30.0,
    max_ack_pending: int = 1000,
) -> JetStreamContext.PullSubscription:
    """Bind to (creating if needed) a durable explicit-ack pull consumer."""
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        filter_subject=subject,
    )
    return await bus.js.pull_subscribe(subject, durable=durable, stream=stream, config=config)


async def consume(
    bus: Bus,
    sub: JetStreamContext.PullSubscription,
    handlers: dict[str, tuple[type[_Message], Handler]],
    *,
    stop: asyncio.Event,
    batch: int = 64,
) -> None:
    """Feed messages of ``sub`` to the handler registered for their subject.

    Handlers are awaited one at a time, in order; the message is acked after
    its handler returned.
    """
    while not stop.is_set():
        try:
            messages = await sub.fetch(batch, timeout=1.0)
        except (NatsTimeoutError, TimeoutError):
            # No message within the wait (a batch fetch raises the builtin).
            continue
        except Exception:  # the connection is reconnecting; try again.  # noqa: BLE001
            log.warning("fetch_failed", exc_info=True)
            await asyncio.sleep(0.5)
            continue
        for msg in messages:
            await handle_one(bus, msg, handlers)


async def handle_one(
    bus: Bus,
    msg: Msg,
    handlers: dict[str, tuple[type[_Message], Handler]],
) -> None:
    model, handler = handlers.get(msg.subject, (None, None))
    if model is None or handler is None:
        await bus.dead_letter(msg.subject, msg.data, "No handler for this subject.", msg.headers)
        await msg.ack()
        return
    try:
        message = decode(msg.data, model)
    except MessageInvalidError as err:
        await bus.dead_letter(msg.subject, msg.data, str(err), msg.headers)
        await msg.ack()
        return

    token = otel_context.attach(extract_context(msg.headers))
    try:
        outcome = await handler(message, msg)
    except Exception:  # a handler bug must not stop the consumer.  # noqa: BLE001
        log.error("message_handler_failed", subject=msg.subject, exc_info=True)
        await msg.nak(delay=HANDLER_RETRY_DELAY_S)
        return
    finally:
        otel_context.detach(token)
    if isinstance(outcome, Redeliver):
        await msg.nak(delay=max(outcome.delay_s, 0.001))
        return
    await msg.ack()
