"""Load what a run needs from the store and check it before anything runs.

The gateway calls this to answer 400/404 at once; the planner calls it
again because run requests may also come straight from NATS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iscore.errors import IscoreError
from iscore.models.application import Application
from iscore.models.step import StepMetadata
from iscore.planning import RunPlan, check_run_requirements
from iscore.stores.base import ApplicationRecord, Store


class ApplicationMissingError(IscoreError):
    """A run names an application that was never uploaded."""

    code = "application_not_found"

    def __init__(self, application: str) -> None:
        super().__init__(
            f"Application {application!r} is not defined; upload it with POST "
            "/api/v1/applications first.",
            field="name",
        )
        self.application = application


@dataclass(frozen=True, slots=True)
class PreparedRun:
    record: ApplicationRecord
    application: Application
    plan: RunPlan
    step_versions: dict[str, int]


async def prepare_run(store: Store, name: str, params: Mapping[str, Any]) -> PreparedRun:
    """Check application ``name`` can run with ``params``; raise why not."""
    record = await store.get_application(name)
    if record is None:
        raise ApplicationMissingError(name)
    application = Application.from_document(record.document)
    metadata: dict[str, StepMetadata] = {}
    versions: dict[str, int] = {}
    for entry in application.steps:
        if entry.file in metadata:
            continue
        step = await store.get_step(entry.file)
        if step is not None:
            metadata[entry.file] = step.metadata
            versions[entry.file] = step.version
    plan = check_run_requirements(application, metadata, params)
    return PreparedRun(record, application, plan, versions)
