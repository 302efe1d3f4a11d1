"""Celery in its own environment: install it, run a worker, call the driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).parent
REPO = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv-celery"
PYTHON = VENV / "bin" / "python"
REQUIREMENT = "celery[redis]>=5,<6"
STAMP = VENV / ".installed"
# Seconds a warm shutdown of the worker may take before it is killed.
STOP_TIMEOUT_S = 30.0


def ensure_installed() -> str:
    """Create ``bench/.venv-celery`` with Celery 5 once; return Celery's version."""
    if not STAMP.exists() or STAMP.read_text().strip() != REQUIREMENT:
        if not PYTHON.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", REQUIREMENT], check=True)
        STAMP.write_text(REQUIREMENT + "\n")
    done = subprocess.run(
        [str(PYTHON), "-c", "import celery; print(celery.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def drive(shape: str, **options: int) -> dict[str, Any]:
    """Run ``bench.celery_driver SHAPE`` and return its JSON figures."""
    argv = [str(PYTHON), "-m", "bench.celery_driver", shape]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    done = subprocess.run(argv, cwd=REPO, env=_env(), check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


class CeleryWorker:
    """``celery worker -P prefork -c 2`` against the benchmark's Redis database."""

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, Any]:
        drive("flush")
        argv = [
            str(VENV / "bin" / "celery"),
            "-A",
            "bench.celery_tasks",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "--loglevel",
            "WARNING",
        ]
        with self.log_file.open("ab") as sink:
            self.process = subprocess.Popen(argv, cwd=REPO, env=_env(), stdout=sink, stderr=sink)
        return drive("ready")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("The Celery worker is not started.")
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        drive("flush")
