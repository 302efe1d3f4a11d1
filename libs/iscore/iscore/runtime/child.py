"""Entry point of a step child process: ``python -m iscore.runtime.child``.

The child applies its resource limits, imports the modules it was asked to
preload, says it is ready, then runs jobs one at a time until its job pipe
closes. A job names a target ``module:function`` taking ``(payload, on_log)``
and returning bytes.

Frames are a 4-byte big-endian length and a msgpack map. The parent writes
jobs on the child's stdin; the child answers on the file its stdout was at
start-up, then points fd 1 at stderr so ``print()`` in step code cannot
corrupt the frames. Child to parent: ``{"ready": pid}`` once, then per job
any number of ``{"log": {...}}`` and one ``{"done": bytes}`` or
``{"error": {"type", "message", "traceback"}}``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import importlib
import json
import os
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import msgpack

from iscore.runtime.limits import ChildLimits, SoftTimeLimitExceeded, apply_limits

# Length prefix of every frame: unsigned 32-bit big-endian byte count.
FRAME_HEADER = struct.Struct(">I")

# Largest frame either side accepts, in bytes (the header's range).
MAX_FRAME_BYTES = 2**32 - 1

# Size of one os.write when sending a frame, in bytes.
_WRITE_CHUNK_BYTES = 1024 * 1024

# Pipe capacity requested for the frame pipes, in bytes (Linux F_SETPIPE_SZ).
_PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

Target = Callable[[bytes, Callable[[dict[str, Any]], None]], bytes]


def encode_frame(
    fields: dict[str, Any], blob_key: str | None = None, blob: bytes = b""
) -> tuple[bytes, bytes]:
    """Encode a frame as a small head plus a large binary value left uncopied.

    ``blob`` becomes the value of ``blob_key``, written as msgpack bin 32
    after the other fields, so a payload of hundreds of megabytes is never
    copied into a second buffer. Without ``blob_key`` the blob is empty.
    """
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(len(fields) + (blob_key is not None))]
    for key, value in fields.items():
        parts.append(packer.pack(key))
        parts.append(packer.pack(value))
    if blob_key is not None:
        parts.append(packer.pack(blob_key))
        parts.append(b"\xc6" + len(blob).to_bytes(4, "big"))
    else:
        blob = b""

    body = b"".join(parts)
    size = len(body) + len(blob)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"Frame of {size} bytes exceeds the {MAX_FRAME_BYTES}-byte limit.")
    return FRAME_HEADER.pack(size) + body, blob


class _FrameChannel:
    """Blocking frame I/O on the two private pipe ends of the child."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._write_lock = threading.Lock()

    def read(self) -> dict[str, Any] | None:
        header = self._read_exactly(FRAME_HEADER.size)
        if header is None:
            return None
        (size,) = FRAME_HEADER.unpack(header)
        body = self._read_exactly(size)
        if body is None:
            return None
        frame: dict[str, Any] = msgpack.unpackb(body, raw=False)
        return frame

    def write(self, fields: dict[str, Any], blob_key: str | None = None, blob: bytes = b"") -> None:
        head, blob = encode_frame(fields, blob_key, blob)
        # Step code may log from its own threads: frames must not interleave.
        with self._write_lock:
            self._write_all(head)
            self._write_all(blob)

    def _read_exactly(self, size: int) -> bytearray | None:
        buffer = bytearray(size)
        view = memoryview(buffer)
        received = 0
        with open(self._read_fd, "rb", buffering=0, closefd=False) as stream:
            while received < size:
                count = stream.readinto(view[received:])
                if not count:
                    return None
                received += count
        return buffer

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._write_fd, view[:_WRITE_CHUNK_BYTES])
            view = view[written:]


class _SoftTimer:
    """Raises ``SoftTimeLimitExceeded`` in the main thread when time is up.

    While the main thread writes a frame the exception is held back and
    raised once the frame is complete, so the stream never carries half a
    frame.
    """

    def __init__(self) -> None:
        self._armed = False
        self._limit_s = 0.0
        self._shielded = 0
        self._pending = False

    def install(self) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)

    def arm(self, limit_s: float | None) -> None:
        self._pending = False
        if limit_s is None:
            return
        self._limit_s = limit_s
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, limit_s)

    def disarm(self) -> None:
        self._armed = False
        self._pending = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    @contextmanager
    def shield(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1
        if self._shielded == 0 and self._pending:
            self._pending = False
            self._raise()

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if not self._armed:
            return
        if self._shielded:
            self._pending = True
            return
        self._raise()

    def _raise(self) -> None:
        self._armed = False
        raise SoftTimeLimitExceeded(f"Soft time limit exceeded ({self._limit_s:g} s).")


def _claim_protocol_fds() -> tuple[int, int]:
    """Move the frame pipes off fds 0 and 1 so step code cannot touch them."""
    job_fd = os.dup(0)
    frame_fd = os.dup(1)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(2, 1)
    for fd in (job_fd, frame_fd):
        # Larger pipes cut the syscalls and wake-ups per megabyte of payload;
        # the kernel refuses sizes above fs.pipe-max-size, which is harmless.
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    return job_fd, frame_fd


def _resolve(target: str, cache: dict[str, Target]) -> Target:
    if target in cache:
        return cache[target]

    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"Target {target!r} is not of the form 'module:function'.")
    function: Target = getattr(importlib.import_module(module_name), function_name)
    cache[target] = function
    return function


def _error_frame(error: BaseException) -> dict[str, Any]:
    return {
        "error": {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        }
    }


def _run_job(
    job: dict[str, Any], channel: _FrameChannel, timer: _SoftTimer, cache: dict[str, Target]
) -> None:
    def send_log(record: dict[str, Any]) -> None:
        with timer.shield():
            channel.write({"log": record})

    payload = job.pop("payload")
    try:
        target = _resolve(job["target"], cache)
        timer.arm(job.get("time_limit_s"))
        try:
            output = target(payload, send_log)
        finally:
            timer.disarm()
        del payload
        channel.write({}, "done", bytes(output))
    except BaseException as error:  # noqa: BLE001 - every failure of a job becomes its answer
        channel.write(_error_frame(error))


def main(argv: list[str] | None = None) -> int:
    """Serve jobs until the parent closes the job pipe; return the exit code."""
    job_fd, frame_fd = _claim_protocol_fds()
    channel = _FrameChannel(job_fd, frame_fd)
    faulthandler.enable()
    options = json.loads((sys.argv[1:] if argv is None else argv)[0])

    try:
        apply_limits(ChildLimits.from_dict(options["limits"]))
        for module_name in options["preload"]:
            importlib.import_module(module_name)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails loudly
        channel.write(_error_frame(error))
        return 1

    timer = _SoftTimer()
    timer.install()
    channel.write({"ready": os.getpid()})
    cache: dict[str, Target] = {}
    while (job := channel.read()) is not None:
        _run_job(job, channel, timer, cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
