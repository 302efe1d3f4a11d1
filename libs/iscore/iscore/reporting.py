"""The planner's side of reports: append a step's rows to its run's report.

Runs of applications with ``"generate_report": true`` get one report, made
when their first step finishes (so a run whose steps add no rows still has
an empty report, as the manual's Reports tab shows). Rows from other
applications' steps are dropped with a warning: the step asked for
something the application does not enable.
"""

from __future__ import annotations

from collections import OrderedDict

import structlog

from iscore.messages import StepResult
from iscore.models.run import RunRecord
from iscore.reports import report_id
from iscore.stores.base import Store

log = structlog.get_logger(__name__)

# Applications (name, version) whose generate_report flag is remembered.
FLAG_CACHE_SIZE = 1024
_flags: OrderedDict[tuple[str, int], bool] = OrderedDict()


async def record_report_rows(store: Store, run: RunRecord, result: StepResult) -> None:
    """Append ``result.report_rows`` to the run's report, creating it if new."""
    if not await _generates_report(store, run):
        if result.report_rows:
            log.warning(
                "report_rows_dropped",
                row_count=len(result.report_rows),
                reason="application does not set generate_report",
            )
        return
    await store.add_report_rows(
        report_id(run.application, run.run_id),
        application=run.application,
        run_id=run.run_id,
        rows=result.report_rows,
    )


async def _generates_report(store: Store, run: RunRecord) -> bool:
    key = (run.application, run.application_version)
    if key in _flags:
        _flags.move_to_end(key)
        return _flags[key]
    record = await store.get_application(*key)
    flag = record is not None and record.document.get("generate_report") is True
    _flags[key] = flag
    if len(_flags) > FLAG_CACHE_SIZE:
        _flags.popitem(last=False)
    return flag
