"""The run status document users' scripts read (MANUAL-NOTES 7 and 8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from iscore import codec
from iscore.errors import IscoreError
from iscore.models.run import RunRecord, StepTaskRecord

API = "/api/v1"
# Saved data larger than this is described, not returned, by GET /tasks/{id}.
MAX_RESULT_BYTES = 1024 * 1024


def _epoch(at: datetime | None) -> int | None:
    return int(at.timestamp()) if at is not None else None


def task_href(task_id: str) -> str:
    return f"{API}/tasks/{task_id}"


def run_document(run: RunRecord, tasks: list[StepTaskRecord]) -> dict[str, Any]:
    """The manual's status document, plus fields that add information."""
    return {
        "app_name": run.application,
        "app_vars": run.app_variables,
        "href": task_href(run.run_id),
        "id": run.run_id,
        "start_time": _epoch(run.started_at or run.created_at),
        "state": run.state.value,
        "steps": [_step_summary(task) for task in tasks],
        "triggered_by": run.triggered_by,
        "application_version": run.application_version,
        "queue": run.queue,
        "configuration": run.configuration,
        "params": run.params,
        "end_time": _epoch(run.finished_at),
        "error": run.error,
        "replay_of": run.replay_of,
        "step_versions": run.step_versions,
    }


def pending_document(run_id: str, application: str, app_variables: dict[str, Any],
                     step_names: list[str], queue: str) -> dict[str, Any]:
    """Status of a run accepted by JetStream that the planner has not recorded yet."""
    return {
        "app_name": application,
        "app_vars": app_variables,
        "href": task_href(run_id),
        "id": run_id,
        "start_time": None,
        "state": "PENDING",
        "steps": [
            {"href": None, "id": None, "name": name, "state": "PENDING", "traceback": None}
            for name in step_names
        ],
        "triggered_by": [{"application_id": run_id, "triggered_by": "USER"}],
        "queue": queue,
    }


def _step_summary(task: StepTaskRecord) -> dict[str, Any]:
    return {
        "href": task_href(task.task_id),
        "id": task.task_id,
        "name": task.name,
        "state": task.state.value,
        "traceback": task.traceback,
        "error": task.error,
        "attempt": task.attempt,
        "next_attempt_time": _epoch(task.next_attempt_at),
        "queue": task.queue,
    }


def task_document(
    task: StepTaskRecord, logs: list[dict[str, Any]]
) -> dict[str, Any]:
    """One step task with its log lines, result and traceback."""
    return {
        "id": task.task_id,
        "href": task_href(task.task_id),
        "run_id": task.run_id,
        "run_href": task_href(task.run_id),
        "name": task.name,
        "file": task.file,
        "state": task.state.value,
        "attempt": task.attempt,
        "next_attempt_time": _epoch(task.next_attempt_at),
        "queue": task.queue,
        "traceback": task.traceback,
        "error": task.error,
        "start_time": _epoch(task.started_at),
        "end_time": _epoch(task.finished_at),
        "worker": task.worker,
        "logs": logs,
        "result": _result_view(task),
    }


def _result_view(task: StepTaskRecord) -> dict[str, Any] | None:
    ref = task.result
    if not task.has_data or not ref:
        return None
    size = int(ref.get("size_bytes", 0))
    if "inline" not in ref or size > MAX_RESULT_BYTES:
        return {"size_bytes": size, "data": None, "stored": "object store"}
    try:
        data = codec.decode(ref["inline"])
    except IscoreError:
        return {"size_bytes": size, "data": None, "error": "Saved data could not be decoded."}
    return {"size_bytes": size, "data": to_json_value(data)}


def to_json_value(value: Any) -> Any:
    """Render saved step data for JSON: tuples and sets become lists."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, complex | datetime):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
