import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from iscore.models.run import RunRecord, RunState, StepTaskRecord
from iscore.models.step import StepMetadata, StepParameter
from iscore.stores import (
    SqliteStore,
    Store,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
    open_store,
)

METADATA = StepMetadata(file="QueryREST", parameters=(StepParameter(name="host", required=True),))
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_run(application: str = "fetch", *, minutes: int = 0, **changes: Any) -> RunRecord:
    return RunRecord(
        application=application,
        application_version=1,
        created_at=T0 + timedelta(minutes=minutes),
        **changes,
    )


def make_tasks(run: RunRecord, *names: str) -> list[StepTaskRecord]:
    return [
        StepTaskRecord(
            run_id=run.run_id,
            name=name,
            file="QueryREST",
            position=index,
            entry={"name": name, "file": "QueryREST", "host": "h"},
        )
        for index, name in enumerate(names)
    ]


# Steps ---------------------------------------------------------------------


async def test_first_step_upload_is_version_one_with_source_hash_and_metadata(store: Store) -> None:
    record = await store.put_step("QueryREST", "print(1)\n", METADATA)

    assert (record.name, record.version, record.source) == ("QueryREST", 1, "print(1)\n")
    assert len(record.sha256) == 64
    assert record.metadata == METADATA
    assert record.created_at.tzinfo is not None


async def test_changed_step_source_gets_the_next_version(store: Store) -> None:
    await store.put_step("QueryREST", "v1", METADATA)

    second = await store.put_step("QueryREST", "v2", METADATA)

    assert second.version == 2
    assert (await store.get_step("QueryREST")) == second
    assert (await store.get_step("QueryREST", 1)).source == "v1"  # type: ignore[union-attr]


async def test_identical_step_source_returns_the_latest_version_unchanged(store: Store) -> None:
    first = await store.put_step("QueryREST", "v1", METADATA)

    again = await store.put_step("QueryREST", "v1", METADATA)

    assert again == first


async def test_list_steps_returns_latest_versions_by_name_with_paging(store: Store) -> None:
    for name in ("b", "a", "c"):
        await store.put_step(name, "v1", METADATA)
    await store.put_step("a", "v2", METADATA)

    listed = await store.list_steps()
    page = await store.list_steps(offset=1, limit=1)

    assert [(s.name, s.version) for s in listed] == [("a", 2), ("b", 1), ("c", 1)]
    assert [s.name for s in page] == ["b"]


async def test_deleted_step_is_gone_but_its_versions_stay_readable(store: Store) -> None:
    await store.put_step("a", "v1", METADATA)

    deleted = await store.delete_step("a")

    assert deleted is True
    assert await store.get_step("a") is None
    assert await store.list_steps() == []
    assert (await store.get_step("a", 1)) is not None
    assert await store.delete_step("a") is False


async def test_step_uploaded_again_after_delete_continues_the_numbering(store: Store) -> None:
    await store.put_step("a", "v1", METADATA)
    await store.delete_step("a")

    again = await store.put_step("a", "v1", METADATA)

    assert again.version == 2


async def test_unknown_step_is_none(store: Store) -> None:
    assert await store.get_step("nothing") is None
    assert await store.delete_step("nothing") is False


# Applications and configurations ---------------------------------------------


async def test_each_application_put_is_a_new_version_and_old_ones_stay(store: Store) -> None:
    await store.put_application({"name": "fetch", "steps": [1]})

    second = await store.put_application({"name": "fetch", "steps": [2]})

    assert second.version == 2
    assert second.document == {"name": "fetch", "steps": [2]}
    assert (await store.get_application("fetch", 1)).document["steps"] == [1]  # type: ignore[union-attr]
    assert (await store.get_application("fetch")) == second


async def test_application_put_with_stale_expected_version_conflicts(store: Store) -> None:
    await store.put_application({"name": "fetch"})
    await store.put_application({"name": "fetch"})

    with pytest.raises(VersionConflictError) as caught:
        await store.put_application({"name": "fetch"}, expected_version=1)

    assert (caught.value.expected, caught.value.current) == (1, 2)
    assert caught.value.code == "version_conflict"
    assert (await store.get_application("fetch")).version == 2  # type: ignore[union-attr]


async def test_expected_version_zero_means_the_application_must_not_exist(store: Store) -> None:
    created = await store.put_application({"name": "fetch"}, expected_version=0)

    with pytest.raises(VersionConflictError):
        await store.put_application({"name": "fetch"}, expected_version=0)

    assert created.version == 1


async def test_matching_expected_version_writes_the_next_version(store: Store) -> None:
    await store.put_application({"name": "fetch"})

    record = await store.put_application({"name": "fetch", "x": 1}, expected_version=1)

    assert record.version == 2


async def test_list_and_delete_applications(store: Store) -> None:
    await store.put_application({"name": "b"})
    await store.put_application({"name": "a"})
    await store.put_application({"name": "a", "v": 2})

    removed = await store.delete_application("b")

    assert removed is True
    assert [(r.name, r.version) for r in await store.list_applications()] == [("a", 2)]
    assert await store.get_application("b") is None
    assert await store.delete_application("b") is False


async def test_configurations_are_versioned_and_fenced_like_applications(store: Store) -> None:
    first = await store.put_configuration({"name": "prod", "configuration_data": []})
    second = await store.put_configuration({"name": "prod", "configuration_data": [{"name": "x"}]})

    with pytest.raises(VersionConflictError):
        await store.put_configuration({"name": "prod"}, expected_version=first.version)

    assert second.version == 2
    assert [r.name for r in await store.list_configurations()] == ["prod"]
    assert (await store.get_configuration("prod", 1)) == first
    assert await store.delete_configuration("prod") is True
    assert await store.get_configuration("prod") is None


async def test_definition_without_a_name_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="name"):
        await store.put_application({"steps": []})


# Runs ------------------------------------------------------------------------


async def test_created_run_and_its_tasks_read_back_equal(store: Store) -> None:
    run = make_run(
        params={"region": "eu"},
        step_versions={"QueryREST": 3},
        triggered_by=[{"run_id": "isapp-parent"}],
    )
    tasks = make_tasks(run, "a", "b")

    created = await store.create_run(run, tasks)

    assert created is True
    assert await store.get_run(run.run_id) == run
    assert await store.list_step_tasks(run.run_id) == tasks
    assert await store.get_step_task(tasks[1].task_id) == tasks[1]


async def test_creating_the_same_run_twice_changes_nothing(store: Store) -> None:
    run = make_run()
    await store.create_run(run, make_tasks(run, "a"))

    again = await store.create_run(run.model_copy(update={"queue": "other"}), make_tasks(run, "b"))

    assert again is False
    assert (await store.get_run(run.run_id)).queue == "default"  # type: ignore[union-attr]
    assert [t.name for t in await store.list_step_tasks(run.run_id)] == ["a"]


async def test_step_tasks_are_listed_in_application_order(store: Store) -> None:
    run = make_run()
    tasks = make_tasks(run, "a", "b", "c")

    await store.create_run(run, list(reversed(tasks)))

    assert [t.name for t in await store.list_step_tasks(run.run_id)] == ["a", "b", "c"]


async def test_unknown_run_and_task_are_none(store: Store) -> None:
    assert await store.get_run("isapp-none") is None
    assert await store.get_step_task("none") is None
    assert await store.list_step_tasks("isapp-none") == []
    assert await store.latest_run("fetch") is None


async def test_latest_run_is_the_newest_of_that_application(store: Store) -> None:
    older, newer, other = make_run(minutes=1), make_run(minutes=2), make_run("else", minutes=3)
    for run in (newer, older, other):
        await store.create_run(run, [])

    assert await store.latest_run("fetch") == newer


async def test_list_runs_is_newest_first_and_filters_by_application_and_state(
    store: Store,
) -> None:
    runs = [
        make_run(minutes=1),
        make_run(minutes=2, state=RunState.SUCCESS),
        make_run("else", minutes=3),
    ]
    for run in runs:
        await store.create_run(run, [])

    everything = await store.list_runs()
    fetch = await store.list_runs(application="fetch")
    pending = await store.list_runs(states={RunState.PENDING})
    paged = await store.list_runs(offset=1, limit=1)

    assert [r.run_id for r in everything] == [r.run_id for r in reversed(runs)]
    assert [r.run_id for r in fetch] == [runs[1].run_id, runs[0].run_id]
    assert [r.run_id for r in pending] == [runs[2].run_id, runs[0].run_id]
    assert [r.run_id for r in paged] == [runs[1].run_id]


async def test_unfinished_runs_are_the_ones_not_in_a_final_state_oldest_first(
    store: Store,
) -> None:
    started = make_run(minutes=2, state=RunState.STARTED)
    pending = make_run(minutes=1)
    done = make_run(minutes=0, state=RunState.FAILURE)
    for run in (started, pending, done):
        await store.create_run(run, [])

    unfinished = await store.unfinished_runs()

    assert [r.run_id for r in unfinished] == [pending.run_id, started.run_id]


async def test_update_run_sets_fields_when_state_matches(store: Store) -> None:
    run = make_run()
    await store.create_run(run, [])
    finished_at = T0 + timedelta(hours=1)

    changed = await store.update_run(
        run.run_id,
        from_states={RunState.PENDING},
        state=RunState.SUCCESS,
        finished_at=finished_at,
        error=None,
    )

    stored = await store.get_run(run.run_id)
    assert changed is True
    assert stored == run.model_copy(update={"state": RunState.SUCCESS, "finished_at": finished_at})
    assert await store.list_runs(states={RunState.SUCCESS}) == [stored]


async def test_update_run_from_other_state_changes_nothing(store: Store) -> None:
    run = make_run(state=RunState.REVOKED)
    await store.create_run(run, [])

    changed = await store.update_run(
        run.run_id, from_states={RunState.PENDING, RunState.STARTED}, state=RunState.SUCCESS
    )

    assert changed is False
    assert await store.get_run(run.run_id) == run


async def test_update_of_unknown_run_is_false(store: Store) -> None:
    assert await store.update_run("isapp-none", state=RunState.STARTED) is False


async def test_update_with_an_unknown_field_is_a_programming_error(store: Store) -> None:
    run = make_run()
    await store.create_run(run, [])

    with pytest.raises(TypeError, match="colour"):
        await store.update_run(run.run_id, colour="red")


async def test_update_with_an_invalid_value_is_refused(store: Store) -> None:
    run = make_run()
    await store.create_run(run, [])

    with pytest.raises(ValueError, match="PAUSED"):
        await store.update_run(run.run_id, state="PAUSED")


# Step tasks ------------------------------------------------------------------


async def test_step_task_fence_accepts_matching_state_and_attempt(store: Store) -> None:
    run = make_run()
    [task] = make_tasks(run, "a")
    await store.create_run(run, [task])
    result = {"inline": b"\x00\x01binary"}

    claimed = await store.update_step_task(
        task.task_id,
        from_states={RunState.PENDING},
        expected_attempt=0,
        attempt=1,
        dispatched_at=T0,
    )
    finished = await store.update_step_task(
        task.task_id,
        from_states={RunState.PENDING, RunState.STARTED},
        expected_attempt=1,
        state=RunState.SUCCESS,
        result=result,
        has_data=True,
        worker="w1",
    )

    stored = await store.get_step_task(task.task_id)
    assert (claimed, finished) == (True, True)
    assert stored == task.model_copy(
        update={
            "attempt": 1,
            "dispatched_at": T0,
            "state": RunState.SUCCESS,
            "result": result,
            "has_data": True,
            "worker": "w1",
        }
    )


async def test_step_task_fence_refuses_a_stale_attempt(store: Store) -> None:
    run = make_run()
    [task] = make_tasks(run, "a")
    await store.create_run(run, [task])
    await store.update_step_task(task.task_id, attempt=2)

    changed = await store.update_step_task(task.task_id, expected_attempt=1, state=RunState.SUCCESS)

    assert changed is False
    assert (await store.get_step_task(task.task_id)).state is RunState.PENDING  # type: ignore[union-attr]


async def test_step_task_fence_refuses_a_final_task(store: Store) -> None:
    run = make_run()
    [task] = make_tasks(run, "a")
    await store.create_run(run, [task])
    await store.update_step_task(task.task_id, state=RunState.REVOKED)

    changed = await store.update_step_task(
        task.task_id, from_states={RunState.PENDING, RunState.STARTED}, state=RunState.SUCCESS
    )

    assert changed is False


async def test_empty_from_states_matches_nothing(store: Store) -> None:
    run = make_run()
    [task] = make_tasks(run, "a")
    await store.create_run(run, [task])

    assert await store.update_step_task(task.task_id, from_states=set(), attempt=1) is False


async def test_result_can_be_replaced_by_an_object_reference_and_cleared(store: Store) -> None:
    run = make_run()
    [task] = make_tasks(run, "a")
    await store.create_run(run, [task])
    reference = {"object": "results/abc", "size_bytes": 300_000_000}

    await store.update_step_task(task.task_id, result=reference)
    referenced = await store.get_step_task(task.task_id)
    await store.update_step_task(task.task_id, result=None, traceback="Traceback ...")
    cleared = await store.get_step_task(task.task_id)

    assert referenced.result == reference  # type: ignore[union-attr]
    assert cleared.result is None  # type: ignore[union-attr]
    assert cleared.traceback == "Traceback ..."  # type: ignore[union-attr]


async def test_entry_update_replaces_the_whole_entry(store: Store) -> None:
    run = make_run()
    [task] = make_tasks(run, "a")
    await store.create_run(run, [task])

    await store.update_step_task(task.task_id, entry={"name": "a", "file": "Other"})

    assert (await store.get_step_task(task.task_id)).entry == {"name": "a", "file": "Other"}  # type: ignore[union-attr]


async def test_of_two_concurrent_claims_exactly_one_wins(store: Store) -> None:
    run = make_run()
    [task] = make_tasks(run, "a")
    await store.create_run(run, [task])

    outcomes = await asyncio.gather(
        *(
            store.update_step_task(
                task.task_id,
                from_states={RunState.PENDING},
                expected_attempt=0,
                attempt=1,
                worker=f"w{i}",
            )
            for i in range(2)
        )
    )

    assert sorted(outcomes) == [False, True]


async def test_of_two_stores_on_the_same_data_exactly_one_claim_wins(
    make_store: Callable[[], Store],
) -> None:
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    run = make_run()
    [task] = make_tasks(run, "a")
    await first.create_run(run, [task])

    outcomes = await asyncio.gather(
        *(
            s.update_step_task(
                task.task_id, from_states={RunState.PENDING}, expected_attempt=0, attempt=1
            )
            for s in (first, second)
        )
    )
    await first.close()
    await second.close()

    assert sorted(outcomes) == [False, True]


# Logs ------------------------------------------------------------------------


async def test_logs_come_back_in_the_order_they_were_appended(store: Store) -> None:
    await store.append_logs("t1", [{"level": "info", "message": "one", "at": T0}])
    await store.append_logs("t2", [{"level": "info", "message": "other", "at": T0}])
    await store.append_logs(
        "t1",
        [
            {"level": "warning", "message": "two", "at": T0 + timedelta(seconds=1)},
            {"level": "error", "message": "three", "at": T0 + timedelta(seconds=2)},
        ],
    )

    logs = await store.get_logs("t1")

    assert [line["message"] for line in logs] == ["one", "two", "three"]
    assert logs[1] == {"level": "warning", "message": "two", "at": T0 + timedelta(seconds=1)}
    assert await store.get_logs("none") == []


# Lifecycle -------------------------------------------------------------------


async def test_data_survives_close_and_reopen(make_store: Callable[[], Store]) -> None:
    store = make_store()
    await store.open()
    run = make_run()
    tasks = make_tasks(run, "a")
    await store.put_step("a", "v1", METADATA)
    await store.put_application({"name": "fetch"})
    await store.create_run(run, tasks)
    await store.append_logs(tasks[0].task_id, [{"level": "info", "message": "m", "at": T0}])
    await store.close()

    reopened = make_store()
    await reopened.open()

    assert (await reopened.get_step("a")).source == "v1"  # type: ignore[union-attr]
    assert (await reopened.get_application("fetch")).version == 1  # type: ignore[union-attr]
    assert await reopened.get_run(run.run_id) == run
    assert await reopened.list_step_tasks(run.run_id) == tasks
    assert len(await reopened.get_logs(tasks[0].task_id)) == 1
    await reopened.close()


async def test_closed_store_refuses_calls(make_store: Callable[[], Store]) -> None:
    store = make_store()

    with pytest.raises(StoreError, match="not open"):
        await store.get_run("isapp-x")


# Opening by URL (backend-specific) ---------------------------------------------


async def test_open_store_opens_a_sqlite_url(tmp_path: Any) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'sub' / 'is.db'}")

    await store.put_application({"name": "fetch"})
    await store.close()

    assert isinstance(store, SqliteStore)
    assert (tmp_path / "sub" / "is.db").exists()


def test_sqlite_url_path_follows_the_sqlalchemy_convention() -> None:
    assert SqliteStore.from_url("sqlite:///data/is.db").path == "data/is.db"
    assert SqliteStore.from_url("sqlite:////var/lib/is.db").path == "/var/lib/is.db"


async def test_mongodb_url_says_the_backend_is_not_in_this_build() -> None:
    with pytest.raises(StoreUnavailableError, match="MongoDB") as caught:
        await open_store("mongodb://user:secret@db:27017/is")

    assert "secret" not in str(caught.value)
    assert caught.value.code == "store_unavailable"


async def test_unknown_store_scheme_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(StoreUnavailableError, match="'redis'") as caught:
        await open_store("redis://:secret@cache")

    assert "secret" not in str(caught.value)
