"""The Celery side: the same no-op and large-data tasks as the steps in steps/.

Imported by the Celery worker and by ``bench.celery_driver``, both inside
``bench/.venv-celery``; nothing here imports the project.
"""

from __future__ import annotations

import os

from celery import Celery

# Redis database the benchmark owns; only this one is flushed.
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "11"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=False,
)


@app.task
def noop(*_args: object, **_kwargs: object) -> None:
    """Do nothing; accepts a chain's or a chord's previous result."""


@app.task
def make_data(size_bytes: int) -> str:
    """Return ``size_bytes`` characters for the next task."""
    return "x" * size_bytes


@app.task
def take_data(data: str) -> int:
    """Read the previous task's data."""
    return len(data)
