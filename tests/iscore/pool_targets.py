"""Job targets for the child pool tests; they run inside pool children."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from iscore.runtime.limits import SoftTimeLimitExceeded

LogSink = Callable[[dict[str, Any]], None]

# Recorded at import, which happens while the child warms up.
IMPORTED_AT = time.time()


def echo(payload: bytes, on_log: LogSink) -> bytes:
    return payload


def describe(payload: bytes, on_log: LogSink) -> bytes:
    facts = {"pid": os.getpid(), "imported_at": IMPORTED_AT, "env": dict(os.environ)}
    return json.dumps(facts).encode()


def log_lines(payload: bytes, on_log: LogSink) -> bytes:
    for index in range(int(payload)):
        on_log({"level": "info", "message": f"line {index}", "at": time.time()})
    return b"logged"


def print_and_return(payload: bytes, on_log: LogSink) -> bytes:
    print("to stdout, which is not the frame pipe")
    sys.stdout.flush()
    os.write(1, b"raw write on fd 1\n")
    return b"clean"


def wait_for_soft_limit(payload: bytes, on_log: LogSink) -> bytes:
    try:
        time.sleep(60)
    except SoftTimeLimitExceeded:
        return b"caught soft limit"
    return b"slept"


def ignore_soft_limit(payload: bytes, on_log: LogSink) -> bytes:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
    return b"slept"


def exit_with_three(payload: bytes, on_log: LogSink) -> bytes:
    os._exit(3)


def segfault(payload: bytes, on_log: LogSink) -> bytes:
    ctypes.string_at(0)
    return b"unreachable"


def allocate(payload: bytes, on_log: LogSink) -> bytes:
    hoard = bytearray(int(payload))
    return str(len(hoard)).encode()


def raise_value_error(payload: bytes, on_log: LogSink) -> bytes:
    raise ValueError("bad input")


def leave_processes(payload: bytes, on_log: LogSink) -> bytes:
    """Fork ``payload`` sleeping processes, some of them forking again, and return."""
    pids = _fork_sleepers(int(payload))
    return json.dumps(pids).encode()


def fork_bomb(payload: bytes, on_log: LogSink) -> bytes:
    """Fork sleepers, then keep the child busy until it is killed."""
    _fork_sleepers(int(payload))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    while True:
        time.sleep(60)


def _fork_sleepers(count: int) -> list[int]:
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            # The grandchild forks once more, so the tree is two levels deep.
            if os.fork() == 0:
                time.sleep(600)
            time.sleep(600)
            os._exit(0)
        pids.append(pid)
    return pids


def rendezvous(payload: bytes, on_log: LogSink) -> bytes:
    """Wait until ``count`` jobs have checked in under ``folder``; say if they met."""
    request = json.loads(payload)
    folder, count = request["folder"], request["count"]
    with open(os.path.join(folder, str(os.getpid())), "w"):
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(os.listdir(folder)) >= count:
            return b"met"
        time.sleep(0.005)
    return b"alone"


def log_then_wait_for_ack(payload: bytes, on_log: LogSink) -> bytes:
    """Log once, then wait until the parent's log callback created ``payload``."""
    on_log({"level": "info", "message": "before ack", "at": time.time()})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(payload):
            return b"acknowledged"
        time.sleep(0.005)
    return b"not acknowledged"


def report_pids_then_sleep(payload: bytes, on_log: LogSink) -> bytes:
    """Fork one sleeper, log this process's pid and the sleeper's, then sleep."""
    sleepers = _fork_sleepers(1)
    on_log({"level": "info", "message": json.dumps([os.getpid(), *sleepers]), "at": time.time()})
    time.sleep(60)
    return b"slept"
