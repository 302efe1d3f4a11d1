"""Schedules end to end: the gateway's /schedule API and real scheduler processes.

Fires are counted in the store the planner writes (the system of record),
and waits are driven by the planner's run events. The only sleeps are the
stretches of real time a test lets pass on purpose: a measuring window
and a scheduler's downtime.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import nats
import pytest

from iscore import subjects
from iscore.models.run import FINAL_STATES, RunRecord
from iscore.stores.sqlite import SqliteStore
from tests.integration.conftest import System

NOOP = """
from ipaascore.BaseStep import BaseStep


class ScheduledNoop(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        self.save_data_for_next_step({"ok": True})
"""


@pytest.fixture(scope="module")
def scheduled(module_system: System) -> Iterator[System]:
    """The module's system with one scheduler and the step every test runs."""
    module_system.start("scheduler", "is-scheduler")
    module_system.upload_step("ScheduledNoop", NOOP)
    yield module_system
    for name in [n for n in module_system.processes if n.startswith("scheduler")]:
        module_system.kill(name)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_application(system: System) -> str:
    name = unique("scheduled")
    system.upload_application({"name": name, "steps": [{"name": "Noop", "file": "ScheduledNoop"}]})
    return name


def frequency_body(application: str, entry_id: str, run_every: int, **extra: Any) -> dict[str, Any]:
    return {
        "application_id": application,
        "entry_id": entry_id,
        "params": {},
        "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": run_every}},
        **extra,
    }


def save(system: System, body: dict[str, Any]) -> dict[str, Any]:
    with system.client() as http:
        reply = http.post("/schedule", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


async def runs_of(system: System, application: str) -> list[RunRecord]:
    store = SqliteStore(system.data_dir / "is.db")
    await store.open()
    try:
        return await store.list_runs(application=application, limit=10_000)
    finally:
        await store.close()


async def wait_for_runs(
    system: System, application: str, count: int, *, timeout_s: float = 40.0
) -> list[RunRecord]:
    """Wait, on the planner's run events, until ``count`` runs are final."""
    nc = await nats.connect(system.nats.url)
    try:
        sub = await nc.subscribe(f"{subjects.RUN_EVENT_PREFIX}.>")
        deadline = time.monotonic() + timeout_s
        while True:
            runs = await runs_of(system, application)
            if sum(run.state in FINAL_STATES for run in runs) >= count:
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(runs)} runs of {application}, wanted {count} final")
            try:
                await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                continue
    finally:
        await nc.close()


def fire_ms_of(run: RunRecord) -> int:
    entry = run.triggered_by[0]
    return round(entry["fire_at"] * 1000)


async def test_one_second_frequency_schedule_fires_once_a_second_on_time(
    scheduled: System,
) -> None:
    application = make_application(scheduled)
    saved = save(scheduled, frequency_body(application, unique("every-second"), 1))
    first_ms = epoch_ms(saved["next_fire_at"])

    await asyncio.sleep(3.5)
    with scheduled.client() as http:
        assert http.delete(f"/schedule/{saved['id']}").status_code == 200
    deleted_ms = round(time.time() * 1000)
    due_count = (deleted_ms - first_ms) // 1000 + 1
    runs = await wait_for_runs(scheduled, application, due_count - 1)
    runs = await wait_for_runs(scheduled, application, len(runs))

    fires = sorted(fire_ms_of(run) for run in runs)
    assert due_count - 1 <= len(fires) <= due_count
    assert fires == [first_ms + k * 1000 for k in range(len(fires))]
    assert all(run.state.value == "SUCCESS" for run in runs), [run.error for run in runs]
    lateness_s = [run.created_at.timestamp() - fire_ms_of(run) / 1000 for run in runs]
    assert max(lateness_s) < 1.0, lateness_s


async def test_runs_started_by_a_schedule_say_so_in_triggered_by(scheduled: System) -> None:
    application = make_application(scheduled)
    entry_id = unique("triggered")
    save(scheduled, frequency_body(application, entry_id, 1))

    runs = await wait_for_runs(scheduled, application, 1)
    with scheduled.client() as http:
        http.delete("/schedule", params={"id": entry_id})

    document = scheduled.get(f"/tasks/{runs[-1].run_id}")
    (entry,) = document["triggered_by"]
    assert entry["triggered_by"] == "SCHEDULE"
    assert entry["schedule_id"] == entry_id
    assert entry["application_id"] == runs[-1].run_id


async def test_disabled_schedule_does_not_fire_until_enabled_and_then_within_a_second(
    scheduled: System,
) -> None:
    application = make_application(scheduled)
    entry_id = unique("toggled")
    disabled = save(scheduled, frequency_body(application, entry_id, 1, enabled=False))
    await asyncio.sleep(1.5)
    assert await runs_of(scheduled, application) == []
    assert disabled["next_fire_at"] is None

    enabled = save(scheduled, frequency_body(application, entry_id, 1))
    runs = await wait_for_runs(scheduled, application, 1, timeout_s=10)
    with scheduled.client() as http:
        http.delete(f"/schedule/{entry_id}")

    first = min(runs, key=fire_ms_of)
    assert fire_ms_of(first) == epoch_ms(enabled["next_fire_at"])
    assert first.created_at.timestamp() - fire_ms_of(first) / 1000 < 1.0


async def test_two_scheduler_replicas_over_a_hundred_fires_start_no_duplicate_run(
    scheduled: System,
) -> None:
    scheduled.start("scheduler-b", "is-scheduler")
    application = make_application(scheduled)
    entry_ids = [unique(f"replicated-{n}") for n in range(20)]
    for entry_id in entry_ids:
        save(scheduled, frequency_body(application, entry_id, 1))
    # Every fire still makes a run, which the planner refuses at once: the
    # runs are what is counted here, and no worker has to execute them.
    with scheduled.client() as http:
        assert http.delete(f"/applications/{application}").status_code == 200

    await asyncio.sleep(5.0)
    for entry_id in entry_ids:
        save(scheduled, frequency_body(application, entry_id, 1, enabled=False))
    listed = {s["id"]: s for s in scheduled.get("/schedule?limit=1000") if s["id"] in entry_ids}
    fire_count = sum(s["fire_count"] for s in listed.values())
    runs = await wait_for_runs(scheduled, application, fire_count)
    scheduled.kill("scheduler-b")
    with scheduled.client() as http:
        for entry_id in entry_ids:
            http.delete(f"/schedule/{entry_id}")

    assert fire_count >= 100
    # Both replicas took part: each published some fires.
    published = [
        scheduled.log_tail(name, 100_000).count('"schedule_fired"')
        for name in ("scheduler", "scheduler-b")
    ]
    assert min(published) > 0
    assert sum(published) >= fire_count
    fires = [(run.triggered_by[0]["schedule_id"], fire_ms_of(run)) for run in runs]
    assert len(fires) == len(set(fires)) == fire_count
    for entry_id in entry_ids:
        own = sorted(ms for schedule_id, ms in fires if schedule_id == entry_id)
        assert own == [own[0] + k * 1000 for k in range(len(own))]


async def test_scheduler_killed_and_restarted_catches_up_exactly_the_policy_maximum(
    scheduled: System,
) -> None:
    application = make_application(scheduled)
    entry_id = unique("misfired")
    misfire = {"policy": "catch_up", "catch_up_max": 2, "grace_s": 1}
    save(scheduled, frequency_body(application, entry_id, 1, misfire=misfire))
    await wait_for_runs(scheduled, application, 1, timeout_s=10)

    scheduled.kill("scheduler")
    await asyncio.sleep(5.0)
    scheduled.start("scheduler", "is-scheduler")
    before = len(await runs_of(scheduled, application))
    await wait_for_runs(scheduled, application, before + 3, timeout_s=20)
    save(scheduled, frequency_body(application, entry_id, 1, misfire=misfire, enabled=False))
    (listed,) = [s for s in scheduled.get("/schedule?limit=1000") if s["id"] == entry_id]
    runs = await wait_for_runs(scheduled, application, listed["fire_count"])
    with scheduled.client() as http:
        http.delete(f"/schedule/{entry_id}")

    fires = sorted(fire_ms_of(run) for run in runs)
    grid = list(range(fires[0], fires[-1] + 1, 1000))
    missing = [ms for ms in grid if ms not in fires]
    assert listed["late_count"] == 2
    assert listed["skipped_count"] == len(missing) >= 1
    # The skipped fires are the oldest of the downtime, in one stretch.
    assert missing == list(range(missing[0], missing[-1] + 1, 1000))
    assert len(fires) == listed["fire_count"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entry_id": "x", "schedule": {}}, "application_id"),
        (
            {
                "application_id": "a",
                "entry_id": "x",
                "schedule": {"schedule_type": "weekly", "schedule_info": {}},
            },
            "schedule.schedule_type",
        ),
        (
            {
                "application_id": "a",
                "entry_id": "x",
                "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 0}},
            },
            "schedule.schedule_info",
        ),
        (
            {
                "application_id": "a",
                "entry_id": "x",
                "schedule": {"schedule_type": "crontab", "schedule_info": {"hour": "25"}},
            },
            "schedule.schedule_info",
        ),
        (
            {
                "application_id": "a",
                "entry_id": "x",
                "timezone": "Nowhere/Special",
                "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 5}},
            },
            "timezone",
        ),
        (
            {
                "application_id": "a",
                "entry_id": "x",
                "misfire": {"policy": "sometimes"},
                "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 5}},
            },
            "misfire",
        ),
    ],
)
def test_invalid_schedule_is_refused_with_400_naming_the_field(
    scheduled: System, body: dict[str, Any], field: str
) -> None:
    with scheduled.client() as http:
        reply = http.post("/schedule", json=body)

    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == field
    assert reply.json()["code"] == "invalid_schedule"


def test_schedule_of_an_unknown_application_is_refused_naming_application_id(
    scheduled: System,
) -> None:
    with scheduled.client() as http:
        reply = http.post("/schedule", json=frequency_body(unique("missing"), "orphan", 60))

    assert reply.status_code == 400
    assert reply.json()["field"] == "application_id"


def test_schedule_is_listed_and_deleted_by_id_in_the_path_or_the_query(
    scheduled: System,
) -> None:
    application = make_application(scheduled)
    by_path, by_query = unique("by-path"), unique("by-query")
    cron = {"schedule_type": "crontab", "schedule_info": {"minute": "0", "hour": "3"}}
    save(
        scheduled,
        {
            "application_id": application,
            "entry_id": by_path,
            "schedule": cron,
            "timezone": "Europe/Paris",
        },
    )
    save(scheduled, frequency_body(application, by_query, 3600))

    listed = {s["id"]: s for s in scheduled.get("/schedule?limit=1000")}
    with scheduled.client() as http:
        path_reply = http.delete(f"/schedule/{by_path}")
        query_reply = http.delete("/schedule", params={"id": by_query})
        again = http.delete(f"/schedule/{by_path}")

    assert listed[by_path]["next_fire_at"].endswith(("01:00:00+00:00", "02:00:00+00:00"))
    # No catch_up_max under "skip": the listed document must upload again.
    assert listed[by_query]["misfire"] == {"policy": "skip", "grace_s": 5.0}
    assert (path_reply.status_code, query_reply.status_code) == (200, 200)
    assert again.status_code == 404
    assert again.json()["code"] == "schedule_not_found"
    remaining = {s["id"] for s in scheduled.get("/schedule?limit=1000")}
    assert not {by_path, by_query} & remaining
