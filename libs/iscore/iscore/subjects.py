"""Every NATS subject, stream, consumer and bucket name, spelled once.

Nothing else in the code base writes a subject by hand (ARCHITECTURE.md,
"Messages"). Queue names are validated before they reach ``task_subject``
so a queue can never inject a wildcard or an extra token.
"""

from __future__ import annotations

# Run requests: from the gateway, the scheduler and external publishers.
RUN_REQUEST = "is.run.request"
RUNS_STREAM = "IS_RUNS"

# Step tasks, one subject per queue: is.task.<queue>.
TASK_PREFIX = "is.task"
TASKS_STREAM = "IS_TASKS"

# What workers report back to the planner.
STEP_RESULT = "is.step.result"
STEP_STARTED = "is.step.started"
STEP_EVENTS = "is.step.>"
RESULTS_STREAM = "IS_RESULTS"

# Messages that failed validation, with the reason: is.deadletter.<origin>.
DEADLETTER_PREFIX = "is.deadletter"
DEADLETTER_STREAM = "IS_DEADLETTER"

# Requests to the planner that must not be lost: due retries, revokes.
RETRY_DUE = "is.control.retry"
REVOKE_REQUEST = "is.control.revoke"
CONTROL_EVENTS = "is.control.>"
CONTROL_STREAM = "IS_CONTROL"
PLANNER_CONTROL_CONSUMER = "planner-control"

# Core NATS broadcast telling workers to kill running attempts now.
KILL_TASKS = "is.kill"

# Revoked run and task ids, read by workers before a task starts.
REVOKED_BUCKET = "is-revoked"

# Live run events (core NATS, not persisted): is.event.run.<run_id>.
RUN_EVENT_PREFIX = "is.event.run"

# Schedule saved or deleted (core NATS): schedulers reload at once.
SCHEDULE_EVENT = "is.event.schedule"

# Durable consumers.
PLANNER_RUNS_CONSUMER = "planner-runs"
PLANNER_RESULTS_CONSUMER = "planner-results"

# Large step data lives here; messages carry the object name.
DATA_BUCKET = "is-data"

# Named cache entries steps write (BaseStep.cache_write), a key-value bucket.
CACHE_BUCKET = "is-cache"

# Header carrying JetStream's de-duplication id.
MSG_ID_HEADER = "Nats-Msg-Id"

DEFAULT_QUEUE = "default"


def task_subject(queue: str) -> str:
    """Subject a step task for ``queue`` is published on."""
    return f"{TASK_PREFIX}.{queue}"


def worker_consumer(queue: str) -> str:
    """Durable consumer shared by every worker serving ``queue``."""
    return f"worker-{queue}"


def deadletter_subject(origin: str) -> str:
    """Dead-letter subject for messages that arrived on ``origin``."""
    return f"{DEADLETTER_PREFIX}.{origin.replace('.', '_')}"


def run_event_subject(run_id: str) -> str:
    """Core NATS subject where state changes of one run are announced."""
    return f"{RUN_EVENT_PREFIX}.{run_id}"
