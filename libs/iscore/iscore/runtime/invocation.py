"""What one step attempt needs to run, and what it hands back.

These plain records are the contract between the stepworker (which builds
an invocation from a task message), the child process that executes step
code, and the local test harness. They hold decoded Python values; the
codec turns them into bytes where they cross a process or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StepInput:
    """Data from one previous step whose ``output_to`` names this step.

    ``has_data`` is False when the previous step saved nothing; reading its
    data then raises ``DataNotAvailableException``. ``parameters`` is that
    step's entry in the application (for ``get_parameter_from_previous_step``).
    """

    step_name: str
    data: Any = None
    has_data: bool = True
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepInvocation:
    """One attempt of one step, with everything its code may ask for.

    ``entry`` is the step's entry in the application: ``name``, ``file``,
    ``output_to``, retry options and the free parameter keys. ``inputs`` are
    ordered as their steps appear in the application (MANUAL-NOTES 12).
    ``configuration`` maps variable names to plaintext values; it exists only
    inside the step's child process. ``cache_url`` is the NATS server
    ``cache_read`` reads entries from (empty: only this step's own writes).
    """

    source: str
    file: str
    entry: dict[str, Any]
    app_variables: dict[str, Any] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[StepInput, ...] = ()
    application: str = ""
    run_id: str = ""
    task_id: str = ""
    attempt: int = 1
    cache_url: str = ""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line written through ``self.logger`` in step code."""

    level: str
    message: str
    at: float


@dataclass(slots=True)
class StepOutcome:
    """What one attempt produced.

    ``saved`` tells whether ``save_data_for_next_step`` was called (saving
    ``None`` is still saving). ``error_type``/``error``/``traceback`` are set
    when the step raised; the traceback is the text users read in
    ``GET /tasks/{id}``. ``report_rows`` are the rows ``add_report_row``
    added; ``cache_writes`` maps cache ids to the entries ``cache_write``
    encoded (``iscore.cache.to_entry``), stored by the worker on success.
    """

    saved: bool = False
    data: Any = None
    logs: list[LogRecord] = field(default_factory=list)
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    report_rows: list[dict[str, Any]] = field(default_factory=list)
    cache_writes: dict[str, bytes] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.error_type is None
