"""Process trees and their memory, read from /proc (Linux only)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

# Interval between two samples of the peak sampler, in s.
SAMPLE_INTERVAL_S = 0.05


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (``VmRSS``, ``VmHWM``); 0 if gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size of ``pid`` in kB (shared pages split); 0 if gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may hold spaces; ppid follows it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    result = []
    pending = [pid]
    while pending:
        for child in children(pending.pop()):
            result.append(child)
            pending.append(child)
    return result


def role_of(pid: int) -> str:
    """A short name for a process of either system under test."""
    argv = command_line(pid)
    joined = " ".join(argv)
    for script in (
        "is-planner",
        "is-stepworker",
        "is-gateway",
        "is-scheduler",
        "is-embedded",
        "nats-server",
    ):
        if script in joined:
            return script.removeprefix("is-")
    if "celery" in joined:
        return "celery"
    if "iscore.runtime.forkserver" in joined:
        # The template and the step children it forks share one command line.
        return "fork server"
    return "child"


@dataclass
class PeakSampler:
    """Samples VmHWM of a process tree until stopped; keeps the peak per pid."""

    root_pid: int
    peaks_kb: dict[int, int] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        pending = [self.root_pid]
        while pending:
            pid = pending.pop()
            peak = status_kb(pid, "VmHWM")
            if peak:
                self.peaks_kb[pid] = max(peak, self.peaks_kb.get(pid, 0))
                self.roles.setdefault(pid, role_of(pid))
            for child in children(pid):
                self.parents.setdefault(child, pid)
                pending.append(child)

    def peak_by_role(self) -> dict[str, int]:
        """Peak kB per role; step children count as '<parent role> child'."""
        result: dict[str, int] = {}
        for pid, peak in self.peaks_kb.items():
            role = self.roles.get(pid, "child")
            parent_role = self.roles.get(self.parents.get(pid, 0), "")
            if role == "fork server":
                # Forked step children sit under the stepworker's fork server.
                role = "stepworker child" if parent_role == role else "stepworker fork server"
            elif role in ("child", parent_role):
                role = f"{parent_role or 'unknown'} child"
            result[role] = max(peak, result.get(role, 0))
        return result
