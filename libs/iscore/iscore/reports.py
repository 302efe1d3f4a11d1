"""Reports of applications run with ``"generate_report": true``.

A report belongs to one run; its id is ``report-<application>-<run id>``
as in the manual's Reports tab. Steps add rows with
``BaseStep.add_report_row``; the planner appends them when it accepts the
step's result.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from iscore.errors import IscoreError
from iscore.models.run import utc_now

REPORT_ID_PREFIX = "report-"
# Rows one step attempt may add; more are refused in the step at once.
MAX_ROWS_PER_STEP = 10_000
# Columns of one row; keys are text, values JSON scalars.
MAX_ROW_COLUMNS = 200


class ReportNotFoundError(IscoreError):
    """No report has this id."""

    code = "report_not_found"

    def __init__(self, report_id: str) -> None:
        super().__init__(
            f"Report {report_id!r} does not exist; list reports with GET /api/v1/reports.",
            field="report_id",
        )
        self.report_id = report_id


class ReportRecord(BaseModel):
    """One report: the rows steps added during one run."""

    model_config = ConfigDict(frozen=True)

    report_id: str
    application: str
    run_id: str
    created_at: AwareDatetime = Field(default_factory=utc_now)
    updated_at: AwareDatetime = Field(default_factory=utc_now)
    row_count: int = 0
    rows: list[dict[str, Any]] = Field(default_factory=list)


def report_id(application: str, run_id: str) -> str:
    """The manual's report id for a run: ``report-<application>-<run id>``."""
    return f"{REPORT_ID_PREFIX}{application}-{run_id}"
