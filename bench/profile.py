"""``python -m bench.profile SHAPE``: where the time of one shape goes.

Starts a fresh embedded system, runs the shape once while py-spy samples the
planner, the stepworker and the gateway, and prints CPU seconds per process
(nats-server and step children included) and each service's hottest
functions. Needs py-spy in the project's environment (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ours, procs
from bench.run import CHAIN_LENGTH, FAN_OUT_WIDTH, Counts, _upload

SHAPES = {
    "runs": "many one-step runs published at once",
    "wide": "one application of many independent steps",
    "fan_out": f"fan-out {FAN_OUT_WIDTH} + join, 5 runs",
    "chain": f"chain of {CHAIN_LENGTH}, 20 runs",
    "round_trip": "200 one-step round trips over NATS",
    "http_round_trip": "200 one-step round trips over POST …/run?wait",
}
PROFILED = ("planner", "stepworker", "gateway")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its reaped children, in s."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS_PER_S


def tree_cpu(system: ours.EmbeddedSystem) -> dict[str, float]:
    result: dict[str, float] = collections.defaultdict(float)
    for role, pid in system.service_pids().items():
        result[role] += cpu_seconds(pid)
        for child in procs.descendants(pid):
            result[f"{role} children"] += cpu_seconds(child)
    return result


async def run_shape(client: ours.Client, shape: str, steps: int) -> float:
    if shape == "runs":
        return await client.run_many_nats("bench_one", steps)
    if shape == "wide":
        return await client.run_nats("bench_fan_out_wide")
    if shape == "fan_out":
        return sum([await client.run_nats("bench_fan_out") for _ in range(5)])
    if shape == "chain":
        return sum([await client.run_nats("bench_chain") for _ in range(20)])
    if shape == "http_round_trip":
        return sum([await client.run_http("bench_one") for _ in range(200)])
    return sum([await client.run_nats("bench_one") for _ in range(200)])


def summarize(raw: Path, top: int) -> list[str]:
    """Top functions by own samples and by inclusive samples (project code only)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[_short(frames[-1])] += count
        for frame in set(frames):
            if any(part in frame for part in ("iscore", "services/", "nats/", "sqlite")):
                inclusive[_short(frame)] += count
    lines = [f"  {total} samples on CPU; own time:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive (project, nats-py, sqlite frames):")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return lines


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "libs/iscore/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where.rsplit(':', 1)[0]})"


async def profile(system: ours.EmbeddedSystem, shape: str, steps: int, out: Path, top: int) -> None:
    client = ours.Client(system)
    await client.open()
    try:
        await _upload(client, Counts(throughput_steps=steps))
        for _ in range(10):
            await client.run_nats("bench_one")
        pids = system.service_pids()
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        recorders = {
            role: subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pids[role]),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(out / f"{role}.txt"),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for role in PROFILED
        }
        before = tree_cpu(system)
        elapsed = await run_shape(client, shape, steps)
        after = tree_cpu(system)
        for recorder in recorders.values():
            recorder.send_signal(subprocess.signal.SIGINT)
            recorder.wait()
    finally:
        await client.close()
    units = {
        "runs": steps,
        "wide": steps,
        "fan_out": 5 * (FAN_OUT_WIDTH + 1),
        "chain": 20 * CHAIN_LENGTH,
        "round_trip": 200,
        "http_round_trip": 200,
    }[shape]
    print(
        f"{SHAPES[shape]}: {elapsed:.2f} s wall, {units} steps, "
        f"{1000 * elapsed / units:.2f} ms wall per step"
    )
    print("CPU per step, by process (ms):")
    for role in sorted(after, key=lambda r: after[r] - before.get(r, 0), reverse=True):
        spent = after[role] - before.get(role, 0)
        print(f"  {role:24s} {1000 * spent / units:7.2f}")
    for role in PROFILED:
        raw = out / f"{role}.txt"
        if raw.exists():
            print(f"{role}:")
            print("\n".join(summarize(raw, top)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--sync-always", action="store_true")
    parser.add_argument(
        "--tasks-per-child", type=int, default=1, help="IS_TASKS_PER_CHILD of the stepworker (1)"
    )
    parser.add_argument("--out", type=Path, help="keep py-spy's raw stacks here")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="is-profile-"))
    out = args.out or scratch
    out.mkdir(parents=True, exist_ok=True)
    system = ours.EmbeddedSystem(
        scratch / "system",
        env=ours.system_env(sync_always=args.sync_always, tasks_per_child=args.tasks_per_child),
    )
    system.start()
    try:
        asyncio.run(profile(system, args.shape, args.steps, out, args.top))
    finally:
        system.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
