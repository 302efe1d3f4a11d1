"""Settings read from the environment, each with an embedded-mode default.

The manual's worker settings keep their names (MANUAL-NOTES 19):
``user_queues``, ``worker_threads``, ``task_soft_time_limit``,
``result_expires``, ``LOGLEVEL``. Everything else is ``IS_*``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from iscore.errors import IscoreError
from iscore.runtime.limits import (
    DEFAULT_MEMORY_BYTES,
    DEFAULT_OPEN_FILES,
    DEFAULT_PROCESSES,
    ChildLimits,
)
from iscore.subjects import DEFAULT_QUEUE


class SettingsError(IscoreError):
    """An environment variable holds a value that cannot be used."""

    code = "invalid_setting"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as err:
        raise SettingsError(
            f"Environment variable {name}={raw!r} is not a number; set a number, "
            f"for example {name}={default:g}.",
            field=name,
        ) from err


def _env_int(name: str, default: int) -> int:
    value = _env_float(name, default)
    if value != int(value) or value < 0:
        raise SettingsError(
            f"Environment variable {name}={os.environ[name]!r} must be a whole number >= 0.",
            field=name,
        )
    return int(value)


def _tasks_per_child() -> int:
    value = _env_int("IS_TASKS_PER_CHILD", 1)
    if value < 1:
        raise SettingsError(
            f"Environment variable IS_TASKS_PER_CHILD={os.environ['IS_TASKS_PER_CHILD']!r} "
            "must be at least 1 (1: a fresh process for every step attempt).",
            field="IS_TASKS_PER_CHILD",
        )
    return value


def _child_limits() -> ChildLimits:
    """Step process limits from ``IS_STEP_*``; 0 lifts a limit."""

    def limit(name: str, default: int, scale: int = 1) -> int | None:
        value = _env_int(name, default)
        return value * scale if value else None

    mib = 1024 * 1024
    return ChildLimits(
        memory_bytes=limit("IS_STEP_MEMORY_MB", DEFAULT_MEMORY_BYTES // mib, mib),
        cpu_seconds=limit("IS_STEP_CPU_SECONDS", 0),
        open_files=limit("IS_STEP_OPEN_FILES", DEFAULT_OPEN_FILES),
        processes=limit("IS_STEP_PROCESSES", DEFAULT_PROCESSES),
    )


def _queues(raw: str) -> tuple[str, ...]:
    names = tuple(q.strip() for q in raw.split(",") if q.strip())
    return names or (DEFAULT_QUEUE,)


@dataclass(frozen=True, slots=True)
class Settings:
    """Process settings; build with ``Settings.from_env()``."""

    data_dir: Path = Path(".isdata")
    nats_url: str = "nats://127.0.0.1:4250"
    store_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    admin_password: str | None = None
    user_queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    worker_threads: int = 2
    task_soft_time_limit_s: float = 3600.0
    # Step attempts one child process serves before it is replaced; 1 keeps
    # every attempt in a fresh process (Celery: worker_max_tasks_per_child).
    tasks_per_child: int = 1
    # Kernel limits of each step process (IS_STEP_MEMORY_MB and friends).
    child_limits: ChildLimits = field(default_factory=ChildLimits)
    result_expires_s: float = 86400.0
    ack_wait_s: float = 30.0
    shutdown_grace_s: float = 10.0
    time_limit_grace_s: float = 5.0
    reconcile_interval_s: float = 60.0
    inline_limit_bytes: int = 256 * 1024
    log_level: str = "INFO"
    otel_exporter: str = ""
    worker_name: str = field(default_factory=lambda: f"worker-{os.getpid()}")

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("IS_DATA_DIR", ".isdata")).resolve()
        store_url = os.environ.get("IS_STORE_URL") or f"sqlite:///{data_dir / 'is.db'}"
        return cls(
            data_dir=data_dir,
            nats_url=os.environ.get("IS_NATS_URL", "nats://127.0.0.1:4250"),
            store_url=store_url,
            http_host=os.environ.get("IS_HTTP_HOST", "127.0.0.1"),
            http_port=_env_int("IS_HTTP_PORT", 8080),
            admin_password=os.environ.get("IS_ADMIN_PASSWORD") or None,
            user_queues=_queues(os.environ.get("user_queues", "")),
            worker_threads=max(1, _env_int("worker_threads", 2)),
            task_soft_time_limit_s=_env_float("task_soft_time_limit", 3600.0),
            tasks_per_child=_tasks_per_child(),
            child_limits=_child_limits(),
            result_expires_s=_env_float("result_expires", 86400.0),
            ack_wait_s=_env_float("IS_ACK_WAIT", 30.0),
            shutdown_grace_s=_env_float("IS_SHUTDOWN_GRACE", 10.0),
            time_limit_grace_s=_env_float("IS_TIME_LIMIT_GRACE", 5.0),
            reconcile_interval_s=_env_float("IS_RECONCILE_INTERVAL", 60.0),
            inline_limit_bytes=_env_int("IS_INLINE_LIMIT", 256 * 1024),
            log_level=_log_level(os.environ.get("LOGLEVEL", "INFO")),
            otel_exporter=os.environ.get("IS_OTEL_EXPORTER", ""),
            worker_name=os.environ.get("IS_WORKER_NAME", f"worker-{os.getpid()}"),
        )


def _log_level(raw: str) -> str:
    # The manual's compose files set LOGLEVEL numerically (10 = DEBUG).
    numeric = {"10": "DEBUG", "20": "INFO", "30": "WARNING", "40": "ERROR", "50": "CRITICAL"}
    return numeric.get(raw.strip(), raw.strip().upper() or "INFO")
