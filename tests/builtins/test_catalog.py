"""The shipped built-ins, their manifest, and seeding them into a store."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from iscore.builtins import seed_builtins
from iscore.builtins.catalog import (
    APPLICATION_NAMES,
    STEP_NAMES,
    Catalog,
    build_manifest,
    load_catalog,
    read_manifest,
    source_digest,
    step_source,
)
from iscore.models.step import StepMetadata
from iscore.runtime.loader import check_step_source
from iscore.stores import SqliteStore, Store

USER_SOURCE = """\
from ipaascore.BaseStep import BaseStep


class QueryREST(BaseStep):
    def execute(self):
        self.save_data_for_next_step("mine")
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = SqliteStore(tmp_path / "store.db")
    await opened.open()
    yield opened
    await opened.close()


def test_the_manual_default_steps_are_all_shipped() -> None:
    assert set(STEP_NAMES) == {
        "stepTemplate",
        "QueryREST",
        "QueryGQL",
        "MySQLDescribe",
        "MySQLInsert",
        "MySQLSelect",
        "MicrosoftSqlDescribe",
        "MicrosoftSqlInsert",
        "MicrosoftSqlSelect",
    }
    assert APPLICATION_NAMES == ("integration_template",)


@pytest.mark.parametrize("name", STEP_NAMES)
def test_each_builtin_step_passes_the_upload_check(name: str) -> None:
    source = step_source(name)

    check_step_source(source, name)

    assert "from ipaascore.BaseStep import BaseStep" in source


async def test_manifest_matches_the_files_inspected_in_a_sandbox() -> None:
    shipped = read_manifest()

    rebuilt = await build_manifest()

    assert rebuilt == shipped, "manifest is stale: run 'python -m iscore.builtins'"


def test_every_builtin_step_has_its_metadata_in_the_manifest() -> None:
    catalog = load_catalog()

    assert all(step.metadata is not None for step in catalog.steps)
    rest = next(step for step in catalog.steps if step.name == "QueryREST")
    assert rest.metadata is not None
    assert rest.metadata.friendly_name == "Query REST"
    required = {p.name for p in rest.metadata.parameters if p.required}
    assert required == {"prefix_url", "method"}


def test_template_application_is_the_template_app() -> None:
    application = load_catalog().applications[0]

    assert application.document["friendly_name"] == "Template App"
    assert {step["file"] for step in application.document["steps"]} == {"stepTemplate"}


async def test_first_start_registers_every_builtin(store: Store) -> None:
    report = await seed_builtins(store)

    assert sorted(report.added) == sorted([*STEP_NAMES, *APPLICATION_NAMES])
    template = await store.get_step("stepTemplate")
    assert template is not None
    assert template.source == step_source("stepTemplate")
    assert template.metadata.friendly_name == "Step Template"
    assert await store.get_application("integration_template") is not None


async def test_a_second_start_changes_nothing(store: Store) -> None:
    await seed_builtins(store)

    report = await seed_builtins(store)

    assert report.added == report.upgraded == []
    assert (await store.get_step("QueryREST")).version == 1  # type: ignore[union-attr]


async def test_a_user_upload_under_a_builtin_name_is_kept(store: Store) -> None:
    await seed_builtins(store)
    await store.put_step("QueryREST", USER_SOURCE, StepMetadata(file="QueryREST"))

    report = await seed_builtins(store)

    assert "QueryREST" in report.kept_user_version
    assert (await store.get_step("QueryREST")).source == USER_SOURCE  # type: ignore[union-attr]


async def test_a_builtin_the_user_deleted_stays_deleted(store: Store) -> None:
    await seed_builtins(store)
    await store.delete_step("QueryGQL")
    await store.delete_application("integration_template")

    report = await seed_builtins(store)

    assert {"QueryGQL", "integration_template"} <= set(report.kept_deleted)
    assert await store.get_step("QueryGQL") is None


async def test_an_older_shipped_version_is_upgraded(store: Store) -> None:
    old_source = step_source("stepTemplate").replace('"1.0.0"', '"0.9.0"')
    await store.put_step("stepTemplate", old_source, StepMetadata(file="stepTemplate"))
    shipped = load_catalog()
    steps = tuple(
        dataclasses.replace(
            step, shipped_digests=step.shipped_digests | {source_digest(old_source)}
        )
        if step.name == "stepTemplate"
        else step
        for step in shipped.steps
    )

    report = await seed_builtins(store, catalog=Catalog(steps, shipped.applications))

    assert "stepTemplate" in report.upgraded
    latest = await store.get_step("stepTemplate")
    assert latest is not None
    assert latest.version == 2
    assert latest.source == step_source("stepTemplate")
