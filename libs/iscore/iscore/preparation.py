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
from iscore.trigger import TRIGGER_METADATA, is_trigger


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


class ConfigurationMissingError(IscoreError):
    """A run names a configuration that was never uploaded."""

    code = "missing_configuration"

    def __init__(self, configuration: str, application: str) -> None:
        super().__init__(
            f"Application {application!r} uses configuration {configuration!r}, which is not "
            "defined; upload it with POST /api/v1/configurations or choose another with "
            "params.configuration.",
            field="configuration",
        )
        self.configuration = configuration


@dataclass(frozen=True, slots=True)
class PreparedRun:
    record: ApplicationRecord
    application: Application
    plan: RunPlan
    step_versions: dict[str, int]
    configuration_version: int | None


async def prepare_run(
    store: Store,
    name: str,
    params: Mapping[str, Any],
    *,
    application_version: int | None = None,
    step_versions: Mapping[str, int] | None = None,
    configuration_version: int | None = None,
) -> PreparedRun:
    """Check application ``name`` can run with ``params``; raise why not.

    The version arguments pin what a replay must reuse; without them the
    latest definitions are read.
    """
    record = await store.get_application(name, application_version)
    if record is None:
        raise ApplicationMissingError(name)
    application = Application.from_document(record.document)
    pinned = step_versions or {}
    metadata: dict[str, StepMetadata] = {}
    versions: dict[str, int] = {}
    for entry in application.steps:
        if entry.file in metadata:
            continue
        if is_trigger(entry.file):
            metadata[entry.file] = TRIGGER_METADATA
            continue
        step = await store.get_step(entry.file, pinned.get(entry.file))
        if step is not None:
            metadata[entry.file] = step.metadata
            versions[entry.file] = step.version
    plan = check_run_requirements(application, metadata, params)
    config_version = None
    if plan.configuration:
        config = await store.get_configuration(plan.configuration, configuration_version)
        if config is None:
            raise ConfigurationMissingError(plan.configuration, name)
        config_version = config.version
    return PreparedRun(record, application, plan, versions, config_version)
