"""What the planner keeps about a run in memory, and record helpers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iscore.dag import Dag
from iscore.errors import IscoreError
from iscore.messages import StepResult
from iscore.models.run import RunRecord, RunState, StepTaskRecord
from iscore.planning import RunPlan

ACTIVE = frozenset({RunState.PENDING, RunState.STARTED, RunState.RETRY})


def now() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    return f"isapp-{uuid.uuid4()}"


@dataclass
class RunContext:
    """What the planner keeps in memory about one unfinished run."""

    run: RunRecord
    dag: Dag
    tasks: dict[str, StepTaskRecord]
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)

    def by_name(self, name: str) -> StepTaskRecord:
        return self.tasks[name]

    def is_finished(self) -> bool:
        return all(t.state.is_final for t in self.tasks.values())


class ReplayTargetMissingError(IscoreError):
    code = "task_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Run {run_id!r} cannot be replayed: it is not known (or expired).")
        self.run_id = run_id


class StepSourceMissingError(IscoreError):
    code = "step_not_found"

    def __init__(self, file: str, version: int | None) -> None:
        super().__init__(f"Step file {file!r} version {version} is no longer stored.")
        self.file = file


class TaskMissingError(IscoreError):
    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"Step task {task_id!r} is not in the store.")
        self.task_id = task_id


def _tasks_for(run_id: str, plan: RunPlan) -> list[StepTaskRecord]:
    tasks = []
    for position, name in enumerate(plan.dag.names):
        entry = plan.steps[name]
        tasks.append(
            StepTaskRecord(
                task_id=str(uuid.uuid4()),
                run_id=run_id,
                name=name,
                file=entry["file"],
                position=position,
                state=RunState.PENDING,
                attempt=0,
                queue=plan.step_queues[name],
                entry=entry,
            )
        )
    return tasks


def _result_ref(result: StepResult) -> dict[str, Any] | None:
    if result.data is None:
        return None
    if result.data.object:
        return {"object": result.data.object, "size_bytes": result.data.size_bytes}
    return {"inline": result.data.inline or b"", "size_bytes": result.data.size_bytes}


def _log_rows(result: StepResult) -> list[dict[str, Any]]:
    rows = [line.model_dump() for line in result.logs]
    if result.logs_truncated_count:
        rows.append(
            {
                "level": "warning",
                "message": f"{result.logs_truncated_count} more log lines were dropped "
                "(per-attempt log limit).",
                "at": time.time(),
            }
        )
    return rows
