"""``python -m bench``: measure is-embedded and Celery on this machine, one run.

Celery goes first with a fresh worker, then ours on a fresh embedded system
(every step attempt in a fresh process, the default), then ours with step
children reused like Celery's prefork children (``IS_TASKS_PER_CHILD``),
then ours with nats-server's ``sync_interval: always``, then 256 MB handed
from one step to the next on fresh processes of both. Prints each
figure as it is taken and writes the table to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from iscore.natsserver import nats_server_binary

from bench import celery_runner, ours, procs
from bench.report import Figure, Report, collect_conditions, load_text, median, percentile

BENCH_DIR = Path(__file__).parent
MB = 1024 * 1024
# Load average (1 min) above which a shape is taken again once, after a pause.
HIGH_LOAD = 1.5


@dataclass(frozen=True)
class Counts:
    """How many times each shape is measured."""

    round_trip: int = 300
    warmup: int = 20
    throughput_steps: int = 5000
    fan_out_runs: int = 10
    chain_runs: int = 10
    # Round trips and DAG runs of the variants (children reused, sync always).
    sync_round_trip: int = 100
    sync_dag_runs: int = 5
    hand_over_runs: int = 2
    hand_over_bytes: int = 256 * MB


QUICK = Counts(
    round_trip=30,
    warmup=5,
    throughput_steps=500,
    fan_out_runs=2,
    chain_runs=2,
    sync_round_trip=20,
    sync_dag_runs=1,
    hand_over_runs=1,
    hand_over_bytes=32 * MB,
)
FAN_OUT_WIDTH = 100
# Step attempts per child in the "children reused" variant: like Celery's
# prefork default, a child serves every task of the measurement.
REUSE_TASKS_PER_CHILD = 100_000
CHAIN_LENGTH = 20


class Bench:
    def __init__(self, counts: Counts, scratch: Path, report: Report) -> None:
        self.counts = counts
        self.scratch = scratch
        self.report = report
        self.celery: dict[str, float] = {}

    # Celery ------------------------------------------------------------------

    def celery_shapes(self) -> None:
        c = self.counts
        worker = celery_runner.CeleryWorker(self.scratch / "celery-worker.log")
        worker.start()
        try:
            celery_runner.drive("round_trip", runs=c.warmup, warmup=0)
            self.celery["idle_kb"] = _tree_pss_kb(worker.pid)
            self.celery["idle_main_kb"] = procs.status_kb(worker.pid, "VmRSS")
            self.celery["load_idle"] = 0
            rt = celery_runner.drive("round_trip", runs=c.round_trip, warmup=c.warmup)["samples"]
            self.celery["rt_p50"] = percentile(rt, 0.5)
            self.celery["rt_p99"] = percentile(rt, 0.99)
            self.celery["rt_load"] = _load()
            tp = celery_runner.drive("throughput", size=c.throughput_steps)["samples"][0]
            self.celery["throughput"] = c.throughput_steps / tp
            fan = celery_runner.drive("fan_out", runs=c.fan_out_runs, size=FAN_OUT_WIDTH)
            self.celery["fan_out"] = median(fan["samples"])
            chained = celery_runner.drive("chain", runs=c.chain_runs, size=CHAIN_LENGTH)
            self.celery["chain"] = median(chained["samples"])
        finally:
            worker.stop()
        print(f"celery: {self.celery}", flush=True)

    def celery_hand_over(self) -> dict[str, int]:
        c = self.counts
        worker = celery_runner.CeleryWorker(self.scratch / "celery-worker-data.log")
        worker.start()
        sampler = procs.PeakSampler(worker.pid)
        sampler.start()
        try:
            figures = celery_runner.drive(
                "hand_over", runs=c.hand_over_runs, size=c.hand_over_bytes
            )
        finally:
            sampler.stop()
            worker.stop()
        self.celery["hand_over"] = median(figures["samples"])
        return sampler.peak_by_role()

    # Ours --------------------------------------------------------------------

    def ours_shapes(self, *, sync_always: bool, tasks_per_child: int = 1) -> None:
        name = "ours-sync" if sync_always else f"ours-{tasks_per_child}"
        system = ours.EmbeddedSystem(
            self.scratch / name,
            env=ours.system_env(sync_always=sync_always, tasks_per_child=tasks_per_child),
        )
        system.start()
        try:
            if sync_always != system.syncs_always():
                raise SystemExit("is-embedded did not honour IS_NATS_SYNC_ALWAYS.")
            asyncio.run(
                self._ours_shapes(system, sync_always=sync_always, tasks_per_child=tasks_per_child)
            )
        finally:
            system.stop()

    async def _ours_shapes(
        self, system: ours.EmbeddedSystem, *, sync_always: bool, tasks_per_child: int
    ) -> None:
        c = self.counts
        client = ours.Client(system)
        await client.open()
        try:
            await _upload(client, c)
            for _ in range(c.warmup):
                await client.run_nats("bench_one")
            default = not sync_always and tasks_per_child == 1
            if default:
                self._idle_rss(system)
            suffix = ""
            if sync_always:
                suffix = ", nats-server sync_interval: always"
            elif tasks_per_child > 1:
                suffix = f", IS_TASKS_PER_CHILD={tasks_per_child} (children reused, as Celery's)"
            rt_runs = c.round_trip if default else c.sync_round_trip
            dag_runs = None if default else c.sync_dag_runs
            await self._round_trips(client, rt_runs, suffix)
            await self._throughput(client, suffix, sync_always=sync_always)
            await self._dag(
                client,
                "bench_fan_out",
                dag_runs or c.fan_out_runs,
                "fan_out",
                f"Fan-out {FAN_OUT_WIDTH} + join, per DAG{suffix}",
                1.0 if sync_always else 0.15,
            )
            await self._dag(
                client,
                "bench_chain",
                dag_runs or c.chain_runs,
                "chain",
                f"Chain of {CHAIN_LENGTH}, per chain{suffix}",
                1.0,
            )
        finally:
            await client.close()

    def _idle_rss(self, system: ours.EmbeddedSystem) -> None:
        pids = system.service_pids()
        worker = pids["stepworker"]
        conditions = f"after {self.counts.warmup} warm-up runs; {load_text()}"
        self.report.add(
            Figure(
                "Idle PSS, stepworker with its 2 warm slot children (and fork server)",
                "MB",
                _tree_pss_kb(worker) / 1024,
                self.celery["idle_kb"] / 1024,
                False,
                "1 reading",
                conditions + "; Celery: worker with its 2 prefork children",
            )
        )
        self.report.add(
            Figure(
                "Idle RSS, stepworker process alone",
                "MB",
                procs.status_kb(worker, "VmRSS") / 1024,
                self.celery["idle_main_kb"] / 1024,
                False,
                "1 reading",
                conditions + "; Celery: worker main process",
            )
        )
        self.report.add(
            Figure(
                "Idle RSS, planner",
                "MB",
                procs.status_kb(pids["planner"], "VmRSS") / 1024,
                None,
                False,
                "1 reading",
                conditions + "; no Celery counterpart",
            )
        )

    async def _round_trips(self, client: ours.Client, runs: int, suffix: str) -> None:
        c = self.counts
        celery_runs = f"Celery {c.round_trip} runs"
        for label, call, target in (
            ("publish on NATS", client.run_nats, 1.0),
            ("POST …/run?wait", client.run_http, 2.0),
        ):
            samples = await _measure(lambda call=call: call("bench_one"), runs)
            conditions = f"{load_text()}{suffix}"
            shape = f"Round trip, one-step application, {label}{suffix}"
            quantiles = (
                ("p50 ms", 0.5, f"{runs} runs after {c.warmup} warm-up; {celery_runs}", target),
                ("p99 ms", 0.99, f"{runs} runs; {celery_runs}", None),
            )
            for metric, quantile, run_count, goal in quantiles:
                celery_ms = self.celery[f"rt_p{round(quantile * 100)}"] * 1000
                self.report.add(
                    Figure(
                        shape,
                        metric,
                        percentile(samples, quantile) * 1000,
                        celery_ms,
                        False,
                        run_count,
                        conditions,
                        goal,
                    )
                )

    async def _throughput(self, client: ours.Client, suffix: str, *, sync_always: bool) -> None:
        steps = self.counts.throughput_steps
        target = 1.0 if sync_always else 3.0
        elapsed = await client.run_nats("bench_fan_out_wide")
        self.report.add(
            Figure(
                f"Throughput, no-op steps, 2 slots: one application of {steps} steps{suffix}",
                "steps/s",
                steps / elapsed,
                self.celery["throughput"],
                True,
                f"1 run of {steps} steps; Celery 1 run of {steps} tasks",
                f"{load_text()}{suffix}",
                target,
            )
        )
        elapsed = await client.run_many_nats("bench_one", steps)
        self.report.add(
            Figure(
                f"Throughput, no-op steps, 2 slots: {steps} one-step runs{suffix}",
                "steps/s",
                steps / elapsed,
                self.celery["throughput"],
                True,
                f"1 run of {steps} runs published at once; Celery 1 run of {steps} tasks",
                f"{load_text()}{suffix}",
                target,
            )
        )

    async def _dag(
        self, client: ours.Client, application: str, runs: int, key: str, shape: str, target: float
    ) -> None:
        await client.run_nats(application)
        samples = await _measure(lambda: client.run_nats(application), runs)
        self.report.add(
            Figure(
                shape,
                "median s",
                median(samples),
                self.celery[key],
                False,
                f"{runs} runs after 1 warm-up; Celery "
                f"{self.counts.fan_out_runs if key == 'fan_out' else self.counts.chain_runs} runs",
                f"{load_text()}",
                target,
            )
        )

    def ours_hand_over(self) -> dict[str, int]:
        system = ours.EmbeddedSystem(self.scratch / "ours-data")
        system.start()
        try:
            return asyncio.run(self._ours_hand_over(system))
        finally:
            system.stop()

    async def _ours_hand_over(self, system: ours.EmbeddedSystem) -> dict[str, int]:
        c = self.counts
        client = ours.Client(system)
        await client.open()
        assert system.process is not None
        sampler = procs.PeakSampler(system.process.pid)
        try:
            await client.upload_steps()
            await client.upload_application(
                ours.hand_over_application("bench_hand_over", c.hand_over_bytes)
            )
            sampler.start()
            samples = [await client.run_nats("bench_hand_over") for _ in range(c.hand_over_runs)]
        finally:
            sampler.stop()
            await client.close()
        self.celery["ours_hand_over"] = median(samples)
        return sampler.peak_by_role()

    def hand_over(self) -> None:
        c = self.counts
        celery_peaks = self.celery_hand_over()
        ours_peaks = self.ours_hand_over()
        size = f"{c.hand_over_bytes // MB} MB"
        runs = f"{c.hand_over_runs} runs each, fresh processes"
        self.report.add(
            Figure(
                f"{size} handed from one step to the next",
                "median s",
                self.celery.pop("ours_hand_over"),
                self.celery["hand_over"],
                False,
                runs,
                load_text(),
            )
        )
        celery_total = sum(celery_peaks.values()) / 1024
        for role, peak in sorted(ours_peaks.items()):
            counterpart = None
            note = "no Celery counterpart"
            if role == "stepworker":
                counterpart, note = celery_peaks.get("celery", 0) / 1024, "Celery: worker main"
            elif role == "stepworker child":
                counterpart = celery_peaks.get("celery child", 0) / 1024
                note = "largest slot child; Celery: largest prefork child"
            self.report.add(
                Figure(
                    f"{size} hand-over, peak RSS of {role}",
                    "MB",
                    peak / 1024,
                    counterpart,
                    False,
                    runs,
                    note,
                )
            )
        self.report.notes.append(
            f"{size} hand-over, Celery peaks: "
            + ", ".join(
                f"{role} {peak / 1024:.0f} MB" for role, peak in sorted(celery_peaks.items())
            )
            + f" (sum {celery_total:.0f} MB; Redis itself is not counted)."
        )


async def _upload(client: ours.Client, c: Counts) -> None:
    await client.upload_steps()
    await client.upload_application(ours.fan_out_application("bench_one", 1, join=False))
    await client.upload_application(
        ours.fan_out_application("bench_fan_out_wide", c.throughput_steps, join=False)
    )
    await client.upload_application(
        ours.fan_out_application("bench_fan_out", FAN_OUT_WIDTH, join=True)
    )
    await client.upload_application(ours.chain_application("bench_chain", CHAIN_LENGTH))


async def _measure(call: Callable[[], Awaitable[float]], runs: int) -> list[float]:
    return [await call() for _ in range(runs)]


def _tree_pss_kb(pid: int) -> int:
    # PSS, not RSS: forked children share most pages with their parent, and
    # summing their RSS would count those pages once per process.
    return sum(procs.pss_kb(p) for p in [pid, *procs.descendants(pid)])


def _load() -> float:
    import os

    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, to try the harness")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "latest.md")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["sync", "reuse", "hand_over"],
        help="leave a group of shapes out",
    )
    parser.add_argument("--steps", type=int, help="steps of the throughput shapes (5000)")
    args = parser.parse_args()
    counts = QUICK if args.quick else Counts()
    if args.steps:
        counts = dataclasses.replace(counts, throughput_steps=args.steps)

    started = time.monotonic()
    celery_version = celery_runner.ensure_installed()
    nats_version = subprocess.run(
        [nats_server_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    report = Report(
        collect_conditions(
            celery_version=celery_version, nats_server=nats_version, repo=BENCH_DIR.parent
        )
    )
    scratch = Path(tempfile.mkdtemp(prefix="is-bench-"))
    bench = Bench(counts, scratch, report)
    bench.celery_shapes()
    bench.ours_shapes(sync_always=False)
    if "reuse" not in args.skip:
        bench.ours_shapes(sync_always=False, tasks_per_child=REUSE_TASKS_PER_CHILD)
    if "sync" not in args.skip:
        bench.ours_shapes(sync_always=True)
    if "hand_over" not in args.skip:
        bench.hand_over()
    # Kept when a shape failed: the services' logs are in there.
    shutil.rmtree(scratch, ignore_errors=True)
    report.conditions["benchmark duration"] = f"{time.monotonic() - started:.0f} s"
    report.write(args.out)
    print(f"\n{report.markdown()}\nWritten to {args.out}", flush=True)
