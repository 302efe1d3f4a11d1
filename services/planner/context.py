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
    # Step name by task id, built on first use (task ids never change).
    names: dict[str, str] = field(default_factory=dict)
    # Step names in ``tasks`` order; those before ``final_prefix`` are final.
    order: list[str] = field(default_factory=list)
    final_prefix: int = 0

    def by_name(self, name: str) -> StepTaskRecord:
        return self.tasks[name]

    def by_id(self, task_id: str) -> StepTaskRecord:
        if len(self.names) != len(self.tasks):
            self.names = {task.task_id: name for name, task in self.tasks.items()}
        name = self.names.get(task_id)
        if name is None:
            raise TaskMissingError(task_id)
        return self.tasks[name]

    def is_finished(self) -> bool:
        # A final state never changes again, so the scan resumes where the
        # last one stopped: steps tend to finish in order, which keeps a run
        # of thousands of steps from rescanning them all after each result.
        if len(self.order) != len(self.tasks):
            self.order = list(self.tasks)
        order = self.order
        while (
            self.final_prefix < len(order) and self.tasks[order[self.final_prefix]].state.is_final
        ):
            self.final_prefix += 1
        return self.final_prefix == len(order)


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
    # Roots are stored already claimed (attempt 1), in the transaction that
    # creates the run: the claim before publishing costs no write of its
    # own, and a crash before the publish is recovered like that of any
    # claimed step (reconcile re-publishes it under the same message id).
    roots = set(plan.dag.roots())
    dispatched_at = now()
    tasks = []
    for position, name in enumerate(plan.dag.names):
        entry = plan.steps[name]
        is_root = name in roots
        tasks.append(
            StepTaskRecord(
                task_id=str(uuid.uuid4()),
                run_id=run_id,
                name=name,
                file=entry["file"],
                position=position,
                state=RunState.PENDING,
                attempt=1 if is_root else 0,
                queue=plan.step_queues[name],
                entry=entry,
                dispatched_at=dispatched_at if is_root else None,
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
