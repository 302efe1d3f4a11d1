"""The services' connection to NATS JetStream: streams, publishing, data.

``Bus.connect`` creates the streams and the data bucket idempotently, so
any service may start first. Publishing here always waits for JetStream's
acknowledgement: a message we report as sent is stored.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import msgpack
import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from iscore import subjects
from iscore.errors import IscoreError
from iscore.messages import _Message, encode
from iscore.telemetry import inject_context

log = structlog.get_logger(__name__)

# Failures that a NATS restart or leader change causes, worth a retry.
RETRYABLE_PUBLISH_ERRORS = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    ServiceUnavailableError,
)

# JetStream drops a message whose id it saw within this window.
DUPLICATE_WINDOW_S = 120.0


class BusUnavailableError(IscoreError):
    """NATS or JetStream cannot be reached or refused a request."""

    code = "bus_unavailable"


def stream_configs(*, result_expires_s: float) -> list[StreamConfig]:
    """The streams every deployment needs, with their retention."""
    return [
        StreamConfig(
            name=subjects.RUNS_STREAM,
            subjects=[subjects.RUN_REQUEST],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.TASKS_STREAM,
            subjects=[f"{subjects.TASK_PREFIX}.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.RESULTS_STREAM,
            subjects=[subjects.STEP_EVENTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.CONTROL_STREAM,
            subjects=[subjects.CONTROL_EVENTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.DEADLETTER_STREAM,
            subjects=[f"{subjects.DEADLETTER_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * 86400.0,
            max_msgs=100_000,
            discard=DiscardPolicy.OLD,
        ),
    ]


class Bus:
    """A NATS connection with its JetStream context and data bucket."""

    def __init__(
        self, nc: Client, js: JetStreamContext, data: ObjectStore, revoked: KeyValue
    ) -> None:
        self.nc = nc
        self.js = js
        self.data = data
        self.revoked = revoked
        # Services ride out a NATS restart by retrying a publish this long;
        # the gateway keeps 0 so a caller gets 503 at once.
        self.publish_retry_s = 0.0

    @classmethod
    async def connect(
        cls, url: str, *, name: str, result_expires_s: float = 86400.0
    ) -> Bus:
        """Connect to ``url`` and make sure streams and the bucket exist.

        Reconnects forever once connected; the first connection fails fast
        with ``BusUnavailableError`` so a service does not start blind.
        """
        try:
            nc = await nats.connect(
                url,
                name=name,
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
            )
        except Exception as err:  # nats-py raises OSError and its own types.  # noqa: BLE001
            raise BusUnavailableError(
                f"Cannot reach NATS at {url!r} ({err}); start nats-server or set IS_NATS_URL."
            ) from err
        js = nc.jetstream(timeout=10)
        for config in stream_configs(result_expires_s=result_expires_s):
            await _ensure_stream(js, config)
        data = await _ensure_bucket(js, result_expires_s)
        revoked = await _ensure_kv(js, subjects.REVOKED_BUCKET, result_expires_s)
        return cls(nc, js, data, revoked)

    async def close(self) -> None:
        # Not drain(): it waits out its timeout on pull subscriptions, and
        # nothing is lost by closing since messages are acked after handling.
        with suppress(Exception):
            await self.nc.close()

    async def publish(
        self,
        subject: str,
        message: _Message,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish ``message`` and wait until JetStream has stored it."""
        all_headers = dict(headers or {})
        inject_context(all_headers)
        if msg_id is not None:
            all_headers[subjects.MSG_ID_HEADER] = msg_id
        payload = encode(message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_retry_s
        delay_s = 0.1
        while True:
            try:
                await self.js.publish(subject, payload, headers=all_headers or None)
                return
            except RETRYABLE_PUBLISH_ERRORS as err:
                if loop.time() + delay_s > deadline:
                    raise
                # A publish that timed out may still have been stored: the
                # message id (where the caller gave one) makes the retry a no-op.
                log.warning("publish_retrying", subject=subject, error=type(err).__name__,
                            delay_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)

    async def dead_letter(
        self, origin: str, data: bytes, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """Keep a message that failed validation, with the reason, and count it."""
        envelope = msgpack.packb(
            {"origin": origin, "reason": reason, "data": data, "headers": dict(headers or {})},
            use_bin_type=True,
        )
        await self.js.publish(subjects.deadletter_subject(origin), envelope)
        log.warning("message_dead_lettered", origin=origin, reason=reason, size_bytes=len(data))

    async def put_data(self, name: str, source: bytes | IO[bytes]) -> int:
        """Store codec bytes (or a readable file) under ``name``; return the size."""
        reader: Any = io.BytesIO(source) if isinstance(source, bytes) else source
        info = await self.data.put(name, reader)
        return int(info.size or 0)

    async def get_data_to_file(self, name: str, directory: Path) -> Path:
        """Stream the object ``name`` into a new file in ``directory``.

        The object store's in-memory read concatenates chunks, which is
        quadratic for large data, so reads always go through a file.
        """
        fd, path = tempfile.mkstemp(dir=directory, prefix="in-")
        with os.fdopen(fd, "wb") as sink:
            await self.data.get(name, writeinto=sink)
        return Path(path)

    async def mark_revoked(self, *ids: str) -> None:
        """Remember revoked run and task ids so no worker starts them."""
        for key in ids:
            await self.revoked.put(key, b"1")

    async def is_revoked(self, *ids: str) -> bool:
        for key in ids:
            try:
                await self.revoked.get(key)
            except KeyNotFoundError:
                continue
            return True
        return False

    async def delete_data(self, name: str) -> None:
        with suppress(NotFoundError):
            await self.data.delete(name)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        # The stream exists with other settings: update what may change.
        await js.update_stream(config)


async def _ensure_kv(js: JetStreamContext, bucket: str, ttl_s: float) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except (NotFoundError, BucketNotFoundError):
        return await js.create_key_value(
            KeyValueConfig(bucket=bucket, ttl=ttl_s, storage=StorageType.FILE)
        )


async def _ensure_bucket(js: JetStreamContext, ttl_s: float) -> ObjectStore:
    try:
        return await js.object_store(subjects.DATA_BUCKET)
    except NotFoundError:
        return await js.create_object_store(
            subjects.DATA_BUCKET,
            config=ObjectStoreConfig(ttl=ttl_s, storage=StorageType.FILE),
        )
