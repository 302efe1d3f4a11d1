"""Register the built-in steps and applications in a store on start-up.

Every new system gets them (manual, "Default Steps" and "Default
Integration Application"). A later start installs a newer shipped version
only over one that was itself shipped: a user's own upload under a
built-in name is never overwritten, and a built-in the user deleted stays
deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from iscore.builtins.catalog import (
    BuiltinApplication,
    BuiltinStep,
    Catalog,
    document_digest,
    load_catalog,
    source_digest,
)
from iscore.models.step import StepMetadata
from iscore.stores.base import Store, VersionConflictError

__all__ = ["SeedReport", "seed_builtins"]

log = structlog.get_logger(__name__)

# Seconds a built-in step's __init__ may take when a stale manifest forces
# its metadata to be read at start-up.
INSPECT_TIME_LIMIT_S = 10.0


@dataclass(slots=True)
class SeedReport:
    """Names of built-ins by what seeding did with them."""

    added: list[str] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_user_version: list[str] = field(default_factory=list)
    kept_deleted: list[str] = field(default_factory=list)


async def seed_builtins(store: Store, *, catalog: Catalog | None = None) -> SeedReport:
    """Store the built-ins the store lacks or holds an older shipped release of.

    ``catalog`` defaults to what this release ships (``load_catalog()``).
    Safe to call on every start and from several gateways at once. Raises
    ``StepInspectionError`` only when the manifest is stale and a built-in
    step fails to load in the sandbox.
    """
    catalog = catalog or load_catalog()
    report = SeedReport()
    for step in catalog.steps:
        await _seed_step(store, step, report)
    for application in catalog.applications:
        await _seed_application(store, application, report)
    log.info(
        "builtins_seeded",
        added_count=len(report.added),
        upgraded_count=len(report.upgraded),
        kept_user_version_count=len(report.kept_user_version),
        kept_deleted_count=len(report.kept_deleted),
    )
    return report


async def _seed_step(store: Store, step: BuiltinStep, report: SeedReport) -> None:
    latest = await store.get_step(step.name)
    if latest is None and await store.get_step(step.name, 1) is not None:
        report.kept_deleted.append(step.name)
        return
    if latest is not None and latest.source == step.source:
        report.unchanged.append(step.name)
        return
    if latest is not None and source_digest(latest.source) not in step.shipped_digests:
        log.info("builtin_step_kept_user_version", step=step.name, version=latest.version)
        report.kept_user_version.append(step.name)
        return

    await store.put_step(step.name, step.source, await _metadata(step))
    (report.added if latest is None else report.upgraded).append(step.name)


async def _metadata(step: BuiltinStep) -> StepMetadata:
    if step.metadata is not None:
        return step.metadata

    from iscore.runtime.child_jobs import inspect_in_sandbox

    log.warning(
        "builtin_manifest_stale",
        step=step.name,
        hint="run 'python -m iscore.builtins' to rebuild the manifest",
    )
    return await inspect_in_sandbox(None, step.source, step.name, time_limit_s=INSPECT_TIME_LIMIT_S)


async def _seed_application(
    store: Store, application: BuiltinApplication, report: SeedReport
) -> None:
    latest = await store.get_application(application.name)
    if latest is None and await store.get_application(application.name, 1) is not None:
        report.kept_deleted.append(application.name)
        return
    if latest is not None and document_digest(latest.document) == application.digest:
        report.unchanged.append(application.name)
        return
    if latest is not None and document_digest(latest.document) not in application.shipped_digests:
        log.info(
            "builtin_application_kept_user_version",
            application=application.name,
            version=latest.version,
        )
        report.kept_user_version.append(application.name)
        return

    expected = 0 if latest is None else latest.version
    try:
        await store.put_application(application.document, expected_version=expected)
    except VersionConflictError:
        # Another gateway seeded it, or a user uploaded, since we looked.
        report.unchanged.append(application.name)
        return
    (report.added if latest is None else report.upgraded).append(application.name)
