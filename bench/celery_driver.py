"""Drives one Celery measurement and prints its figures as one JSON line.

Runs inside ``bench/.venv-celery`` (``python -m bench.celery_driver SHAPE``)
against a worker the orchestrator started; times are seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import redis
from celery import chain, chord, group
from celery.result import ResultSet

from bench.celery_tasks import REDIS_URL, app, make_data, noop, take_data

# Longest wait for one measured unit of work, in s.
RESULT_TIMEOUT_S = 600.0


def wait_ready(deadline_s: float) -> dict[str, object]:
    """Ping the worker until it answers; return its version string."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        if replies:
            stats = app.control.inspect(timeout=2.0).stats() or {}
            pool = next(iter(stats.values()), {}).get("pool", {})
            return {"replies": len(replies), "concurrency": pool.get("max-concurrency")}
    raise SystemExit(f"The Celery worker did not answer a ping within {deadline_s:.0f} s.")


def flush() -> dict[str, object]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    return {"flushed": REDIS_URL}


def round_trip(runs: int, warmup: int) -> dict[str, object]:
    for _ in range(warmup):
        noop.delay().get(timeout=RESULT_TIMEOUT_S)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        noop.delay().get(timeout=RESULT_TIMEOUT_S)
        samples.append(time.perf_counter() - started)
    return {"samples": samples}


def throughput(count: int) -> dict[str, object]:
    started = time.perf_counter()
    results = ResultSet([noop.delay() for _ in range(count)])
    submitted = time.perf_counter() - started
    results.join_native(timeout=RESULT_TIMEOUT_S)
    return {"samples": [time.perf_counter() - started], "submit_s": submitted}


def fan_out(runs: int, width: int) -> dict[str, object]:
    samples = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        chord(group(noop.s() for _ in range(width)))(noop.s()).get(timeout=RESULT_TIMEOUT_S)
        samples.append(time.perf_counter() - started)
    return {"samples": samples[1:]}


def chained(runs: int, length: int) -> dict[str, object]:
    samples = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        chain(noop.s() for _ in range(length)).apply_async().get(timeout=RESULT_TIMEOUT_S)
        samples.append(time.perf_counter() - started)
    return {"samples": samples[1:]}


def hand_over(runs: int, size_bytes: int) -> dict[str, object]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        size = chain(make_data.s(size_bytes), take_data.s()).apply_async()
        if size.get(timeout=RESULT_TIMEOUT_S) != size_bytes:
            raise SystemExit("The Celery take_data task did not receive all the data.")
        samples.append(time.perf_counter() - started)
    return {"samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.celery_driver")
    parser.add_argument(
        "shape",
        choices=["ready", "flush", "round_trip", "throughput", "fan_out", "chain", "hand_over"],
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--size", type=int, default=0)
    args = parser.parse_args()
    if args.shape == "ready":
        figures = wait_ready(60.0)
    elif args.shape == "flush":
        figures = flush()
    elif args.shape == "round_trip":
        figures = round_trip(args.runs, args.warmup)
    elif args.shape == "throughput":
        figures = throughput(args.size)
    elif args.shape == "fan_out":
        figures = fan_out(args.runs, args.size)
    elif args.shape == "chain":
        figures = chained(args.runs, args.size)
    else:
        figures = hand_over(args.runs, args.size)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
