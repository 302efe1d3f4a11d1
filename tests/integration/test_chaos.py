"""Kill -9 workers, the planner and nats-server under load: nothing is lost.

Each test submits a batch of runs, kills a component repeatedly while they
progress (paced by the planner's run events, not by sleeping), then checks
that every run ends SUCCESS and that the planner accepted exactly one
result per step task.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from typing import Any

import msgpack
import nats
import pytest

from iscore.natsserver import NatsServer
from tests.integration.conftest import System

SLOW = """
import time

from ipaascore.BaseStep import BaseStep


class Slow(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="seconds", default_value=0.3)

    def execute(self):
        time.sleep(float(self.get_parameter("seconds")))
        self.save_data_for_next_step(self.get_name())
"""

CHAIN = {
    "name": "chain",
    "steps": [
        {"name": "one", "file": "Slow", "output_to": ["two"]},
        {"name": "two", "file": "Slow", "output_to": ["three"]},
        {"name": "three", "file": "Slow"},
    ],
}


class EventCounter:
    """Counts the planner's step events by state; waits for new ones."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._changed = asyncio.Event()

    async def on_event(self, msg: Any) -> None:
        event = msgpack.unpackb(msg.data)
        if event.get("task_id"):
            self.counts[event["state"]] += 1
            self._changed.set()

    async def wait_for(self, state: str, count: int, timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s):
            while self.counts[state] < count:
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_new(self, state: str) -> None:
        await self.wait_for(state, self.counts[state] + 1)


async def watch(url: str) -> tuple[nats.aio.client.Client, EventCounter]:
    counter = EventCounter()
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    await nc.subscribe("is.event.run.>", cb=counter.on_event)
    return nc, counter


def accepted_results(system: System) -> Counter[str]:
    """How many results the planner accepted per task id, over all its lives."""
    accepted: Counter[str] = Counter()
    for line in (system.logs / "planner.log").read_text().splitlines():
        if '"step_finished"' in line:
            accepted[json.loads(line)["task_id"]] += 1
    return accepted


async def finish_all(system: System, run_ids: list[str]) -> list[dict[str, Any]]:
    return [await system.wait_for(run_id, timeout_s=120) for run_id in run_ids]


def assert_nothing_lost_or_doubled(system: System, finals: list[dict[str, Any]]) -> None:
    assert {doc["state"] for doc in finals} == {"SUCCESS"}, [d["state"] for d in finals]
    task_ids = {step["id"] for doc in finals for step in doc["steps"]}
    accepted = accepted_results(system)
    assert {task_id: accepted[task_id] for task_id in task_ids} == dict.fromkeys(task_ids, 1)


@pytest.mark.timeout(300)
async def test_worker_killed_20_times_mid_step_loses_and_doubles_nothing(
    system_factory: Any,
) -> None:
    system = system_factory(ack_wait_s=1.0)
    system.start_all()
    system.upload_step("Slow", SLOW)
    system.upload_application(CHAIN)
    nc, events = await watch(system.nats.url)
    run_ids = [system.run("chain")["id"] for _ in range(10)]

    for kill in range(20):
        await events.wait_for_new("STARTED")
        name = next(n for n in system.processes if n.startswith("worker"))
        system.kill(name, signal.SIGKILL)
        system.start(f"worker{kill}", "is-stepworker", IS_WORKER_NAME=f"worker-{kill}")
    finals = await finish_all(system, run_ids)
    await nc.close()

    assert_nothing_lost_or_doubled(system, finals)


@pytest.mark.timeout(300)
async def test_planner_killed_10_times_mid_run_loses_and_doubles_nothing(
    system_factory: Any,
) -> None:
    system = system_factory(ack_wait_s=2.0)
    system.start_all()
    system.upload_step("Slow", SLOW)
    system.upload_application(CHAIN)
    nc, events = await watch(system.nats.url)
    run_ids = [system.run("chain")["id"] for _ in range(10)]

    for kill in range(10):
        await events.wait_for("SUCCESS", 2 * (kill + 1))
        system.kill("planner", signal.SIGKILL)
        system.start("planner", "is-planner")
    finals = await finish_all(system, run_ids)
    await nc.close()

    assert_nothing_lost_or_doubled(system, finals)


@pytest.mark.timeout(300)
async def test_nats_server_killed_5_times_under_load_loses_and_doubles_nothing(
    system_factory: Any,
) -> None:
    system = system_factory(ack_wait_s=2.0)
    system.start_all()
    system.upload_step("Slow", SLOW)
    system.upload_application(CHAIN)
    nc, events = await watch(system.nats.url)
    run_ids: list[str] = []

    for restart in range(5):
        run_ids += [system.run("chain")["id"] for _ in range(4)]
        await events.wait_for("SUCCESS", 2 * (restart + 1))
        system.nats.stop(kill=True)
        system.nats = NatsServer(store_dir=system.nats.store_dir, port=system.nats.port)
        system.start_nats()
        system.wait_ready()
    finals = await finish_all(system, run_ids)
    await nc.close()

    assert_nothing_lost_or_doubled(system, finals)
