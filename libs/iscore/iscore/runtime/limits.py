"""Resource limits, containment and the scrubbed environment of step children.

The parent describes the limits (``ChildLimits``); the child applies them to
itself at start-up, before it imports step code (ARCHITECTURE.md, "Resource
limits apply to each child"). Each child leads its own session, and the
parent kills that whole process group when a job ends badly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Default address-space cap of one child, in bytes.
DEFAULT_MEMORY_BYTES = 2 * 1024**3

# Default cap on open file descriptors of one child.
DEFAULT_OPEN_FILES = 1024

# Default RLIMIT_NPROC of one child. The kernel counts every process and
# thread of the real uid against it and does not enforce it for root, so it
# is a backstop only; the pool kills the child's whole process group as well.
DEFAULT_PROCESSES = 4096

# Variables copied from the parent when set. Everything else is dropped:
# a whitelist, so no service secret (IS_*, NATS_*, AWS_*, tokens) leaks.
INHERITED_VARIABLES = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)

# How long to wait for a killed process group to disappear, in seconds.
KILL_WAIT_S = 5.0

# Used when the parent has no PATH of its own.
FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"


class SoftTimeLimitExceeded(Exception):  # noqa: N818 - the name step authors know from Celery
    """Raised inside step code when its time limit expires.

    Step code may catch it to clean up and return; a step that does not
    answer within the grace period after it is killed. The name is Celery's,
    which PowerFlow step authors already catch.
    """


@dataclass(frozen=True, slots=True)
class ChildLimits:
    """Kernel resource limits applied to each child process.

    ``None`` leaves a limit as inherited. ``memory_bytes`` caps the address
    space (``RLIMIT_AS``), so an allocation past it raises ``MemoryError``.
    ``cpu_seconds`` is CPU time, not wall-clock time; step time limits are
    wall-clock and enforced by the pool, hence unlimited by default.
    ``file_size_bytes`` caps any file one child writes; unlimited by default
    because data handed between steps can be large.
    """

    memory_bytes: int | None = DEFAULT_MEMORY_BYTES
    cpu_seconds: int | None = None
    open_files: int | None = DEFAULT_OPEN_FILES
    processes: int | None = DEFAULT_PROCESSES
    file_size_bytes: int | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and value <= 0:
                raise ValueError(f"Child limit {name!r} must be positive or None, got {value!r}.")

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ChildLimits:
        return cls(**values)


_RLIMITS = (
    ("memory_bytes", resource.RLIMIT_AS),
    ("cpu_seconds", resource.RLIMIT_CPU),
    ("open_files", resource.RLIMIT_NOFILE),
    ("processes", resource.RLIMIT_NPROC),
    ("file_size_bytes", resource.RLIMIT_FSIZE),
)


def apply_limits(limits: ChildLimits) -> None:
    """Set the limits on the calling process; its children inherit them.

    Soft and hard limits are both lowered, so step code cannot raise them
    again. A limit above the current hard limit is clamped to it, since only
    a privileged process may raise a hard limit.
    """
    for name, which in _RLIMITS:
        value = getattr(limits, name)
        if value is None:
            continue

        _, hard = resource.getrlimit(which)
        # CPU time: the kernel sends SIGXCPU at the soft limit and SIGKILL at
        # the hard one; a second between them lets SIGXCPU name the cause.
        ceiling = value + 1 if which == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            value, ceiling = min(value, hard), min(ceiling, hard)
        resource.setrlimit(which, (value, ceiling))


def child_environment(
    *,
    home: Path,
    import_paths: Sequence[str],
    extra: Mapping[str, str] | None = None,
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Build the whole environment of a child from a whitelist.

    ``home`` becomes HOME and the parent of TMPDIR; ``import_paths`` become
    PYTHONPATH so the child imports the same iscore as the service. ``extra``
    is added last, for variables an operator chose to pass on (a proxy, say).
    """
    source = os.environ if parent is None else parent
    env = {name: source[name] for name in INHERITED_VARIABLES if name in source}
    env.setdefault("PATH", FALLBACK_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env["HOME"] = str(home)
    env["TMPDIR"] = str(home / "tmp")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if import_paths:
        env["PYTHONPATH"] = os.pathsep.join(import_paths)
    env.update(extra or {})
    return env


def describe_bytes(size_bytes: int) -> str:
    """Render a byte count the way operators write limits: ``2 GiB``, ``512 MiB``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size_bytes >= scale:
            amount = size_bytes / scale
            text = f"{amount:.0f}" if amount == int(amount) else f"{amount:.1f}"
            return f"{text} {unit}"
    return f"{size_bytes} bytes"


def group_members(pgid: int) -> set[int]:
    """Return the live (non-zombie) processes of process group ``pgid``.

    Reads ``/proc``, so it works only on Linux, like the rest of the pool.
    """
    members = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            members.add(int(entry.name))
    return members


def describe_error(error_type: str, message: str, limits: ChildLimits) -> str:
    """The error text of an exception raised in a child, naming a limit it hit.

    An exception without a message (``MemoryError()``) is named by its type,
    so an error is never empty.
    """
    if error_type == "MemoryError" and (named := memory_limit_error(limits)):
        return named
    return f"{error_type}: {message}" if message else error_type


def memory_limit_error(limits: ChildLimits) -> str | None:
    """What a ``MemoryError`` in a child means under ``limits``, if it has one."""
    if limits.memory_bytes is None:
        return None
    return f"memory limit of {describe_bytes(limits.memory_bytes)} exceeded (MemoryError)"


def child_pids(pid: int) -> set[int] | None:
    """Return the children of process ``pid`` (zombies too), from ``/proc``.

    ``None`` when this kernel does not list children (no
    CONFIG_PROC_CHILDREN); an empty set when ``pid`` is gone.
    """
    children: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as listing:
                children.update(int(child) for child in listing.read().split())
        except FileNotFoundError:
            if os.path.isdir(f"/proc/{pid}/task/{task}"):
                return None
        except OSError:
            continue
    return children


async def kill_process_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` and wait until none is left.

    Killing the group rather than the child catches what step code forked
    (a fork bomb included) as long as it stayed in the child's session.
    """
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if not group_members(pgid):
            return
        # SIGKILL delivery is asynchronous; processes forked while the group
        # was being signalled are caught by the next round.
        await asyncio.sleep(0.01)
    log.warning("child_group_survived_kill", pgid=pgid, process_count=len(group_members(pgid)))
