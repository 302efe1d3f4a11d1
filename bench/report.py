"""Figures, their conditions, and the markdown table written to bench/results/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured figure of ours beside Celery's, with how it was taken."""

    shape: str
    metric: str
    ours: float | None
    celery: float | None
    higher_is_better: bool
    runs: str
    conditions: str
    target: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.celery is None or self.celery == 0:
            return None
        return self.ours / self.celery

    @property
    def met(self) -> str:
        if self.target is None or self.ratio is None:
            return ""
        reached = self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target
        return "yes" if reached else "no"

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:g}×"


@dataclass
class Report:
    conditions: dict[str, str]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(_row(figure), flush=True)

    def markdown(self) -> str:
        lines = [
            "| shape | metric | ours | Celery | ours / Celery | better | target | met "
            "| runs | conditions |",
            "| --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |",
        ]
        lines += [_row(f) for f in self.figures]
        head = [f"- {key}: {value}" for key, value in self.conditions.items()]
        notes = [f"- {note}" for note in self.notes]
        return "\n".join(["Conditions:", "", *head, "", *lines, "", *notes, ""])

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Benchmark results\n\n{self.markdown()}")
        raw = {
            "conditions": self.conditions,
            "notes": self.notes,
            "figures": [asdict(f) | {"ratio": f.ratio, "met": f.met} for f in self.figures],
        }
        path.with_suffix(".json").write_text(_json(raw))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _row(f: Figure) -> str:
    ratio = "–" if f.ratio is None else f"{f.ratio:.2f}×"
    better = "higher" if f.higher_is_better else "lower"
    return (
        f"| {f.shape} | {f.metric} | {_number(f.ours)} | {_number(f.celery)} | {ratio} "
        f"| {better} | {f.target_text()} | {f.met} | {f.runs} | {f.conditions} |"
    )


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``samples`` (``fraction`` in 0..1)."""
    ordered = sorted(samples)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    if done.returncode != 0:
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def collect_conditions(*, celery_version: str, nats_server: str, repo: Path) -> dict[str, str]:
    one, five, fifteen = os.getloadavg()
    commit = _output(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _output(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs ({_cpu_model()}), {platform.platform()}",
        "load average at start": f"{one:.2f} / {five:.2f} / {fifteen:.2f}",
        "python": sys.version.split()[0],
        "nats-server": nats_server,
        "celery": f"{celery_version} (prefork, concurrency 2, Redis broker and result "
        "backend, database 11)",
        "redis": _output(["redis-server", "--version"]),
        "ours": f"is-embedded (SQLite store, 1 stepworker with 2 slots), git {commit}"
        + (" with uncommitted changes" if dirty not in ("", "?") else ""),
    }
