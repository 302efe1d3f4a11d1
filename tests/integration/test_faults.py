"""Faults and big data: killed workers, restarts, junk on NATS, 64 MB between steps."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import msgpack
import nats

from iscore import subjects
from tests.integration.conftest import System

# Waits for a release file the test creates, so the test decides when the
# step may finish; a second attempt finishes at once.
GATED = """
import os
import time

from ipaascore.BaseStep import BaseStep


class Gated(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="gate", required=True)

    def execute(self):
        gate = self.get_parameter("gate")
        attempts = gate + ".attempts"
        with open(attempts, "a") as sink:
            sink.write("x")
        with open(attempts) as source:
            first = len(source.read()) == 1
        while first and not os.path.exists(gate + ".release"):
            time.sleep(0.05)
        self.save_data_for_next_step({"attempt_count": len(open(attempts).read())})
"""

BIG_PRODUCER = """
from ipaascore.BaseStep import BaseStep


class BigProducer(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        self.save_data_for_next_step({"blob": b"\\x01" * (64 * 1024 * 1024), "tag": ("a", 1)})
"""

BIG_CONSUMER = """
from ipaascore.BaseStep import BaseStep


class BigConsumer(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        data = self.join_previous_step_data()
        blob = data["blob"]
        self.save_data_for_next_step(
            {"size": len(blob), "ok": blob == b"\\x01" * len(blob), "tag": data["tag"]}
        )
"""

NOOP = """
from ipaascore.BaseStep import BaseStep


class Noop(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        self.save_data_for_next_step("done")
"""


def gated_application(name: str = "gated") -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"name": "wait here", "file": "Gated", "gate": "${appvar.gate}",
             "output_to": ["after"]},
            {"name": "after", "file": "Noop"},
        ],
        "app_variables": [{"name": "gate", "required": True}],
    }


async def test_64_mb_passes_between_two_steps_through_the_object_store(system: System) -> None:
    system.upload_step("BigProducer", BIG_PRODUCER)
    system.upload_step("BigConsumer", BIG_CONSUMER)
    system.upload_application({
        "name": "big",
        "steps": [
            {"name": "make", "file": "BigProducer", "output_to": ["check"]},
            {"name": "check", "file": "BigConsumer"},
        ],
    })

    doc = await system.wait_for(system.run("big")["id"], timeout_s=120)

    assert doc["state"] == "SUCCESS", doc
    make = system.get(f"/tasks/{doc['steps'][0]['id']}")
    check = system.get(f"/tasks/{doc['steps'][1]['id']}")
    assert make["result"]["stored"] == "object store"
    assert make["result"]["size_bytes"] > 64 * 1024 * 1024
    assert check["result"]["data"] == {"size": 64 * 1024 * 1024, "ok": True, "tag": ["a", 1]}


async def test_malformed_nats_messages_are_dead_lettered_and_runs_go_on(
    system: System, nc: nats.aio.client.Client
) -> None:
    js = nc.jetstream()
    system.upload_step("Noop", NOOP)
    system.upload_application({"name": "noop", "steps": [{"name": "n", "file": "Noop"}]})

    await js.publish(subjects.RUN_REQUEST, b"\xc1 not msgpack")
    await js.publish(subjects.RUN_REQUEST, msgpack.packb({"application": 42}))
    await js.publish(subjects.STEP_RESULT, msgpack.packb(["a", "list"]))
    await js.publish(subjects.task_subject("default"), b"{}")
    doc = await system.wait_for(system.run("noop")["id"])

    assert doc["state"] == "SUCCESS"
    dead = await js.pull_subscribe(f"{subjects.DEADLETTER_PREFIX}.>", stream=subjects.DEADLETTER_STREAM)
    letters = [msgpack.unpackb(m.data) for m in await dead.fetch(4, timeout=10)]
    reasons = " | ".join(letter["reason"] for letter in letters)
    assert len(letters) == 4
    assert "not valid msgpack" in reasons
    assert "application" in reasons
    assert all(system.processes[name].poll() is None for name in ("planner", "worker"))


async def test_worker_killed_mid_step_is_redelivered_and_run_finishes_once(
    system_factory: Any, tmp_path: Path
) -> None:
    system = system_factory(ack_wait_s=2.0)
    system.start_all()
    system.upload_step("Gated", GATED)
    system.upload_step("Noop", NOOP)
    system.upload_application(gated_application())
    gate = tmp_path / "gate"

    run_id = system.run("gated", params={"gate": str(gate)})["id"]
    await system.wait_for(run_id, step_state="STARTED")
    system.kill("worker", signal.SIGKILL)
    system.start("worker2", "is-stepworker", IS_WORKER_NAME="worker-2")
    doc = await system.wait_for(run_id, timeout_s=60)

    assert doc["state"] == "SUCCESS", doc
    first = system.get(f"/tasks/{doc['steps'][0]['id']}")
    assert first["worker"] == "worker-2"
    assert first["result"]["data"] == {"attempt_count": 2}
    assert doc["steps"][1]["state"] == "SUCCESS"


async def test_whole_system_restarted_with_a_run_in_flight_finishes_the_run(
    system_factory: Any, tmp_path: Path
) -> None:
    # JetStream keeps an unacked delivery pending across its own restart, so
    # the task comes back after the ack wait; a short one keeps this quick.
    system = system_factory(ack_wait_s=3.0)
    system.start_all()
    system.upload_step("Gated", GATED)
    system.upload_step("Noop", NOOP)
    system.upload_application(gated_application())
    gate = tmp_path / "gate"
    run_id = system.run("gated", params={"gate": str(gate)})["id"]
    await system.wait_for(run_id, step_state="STARTED")

    system.stop_all()
    gate.with_suffix(".release").touch()
    system.start_all()
    doc = await system.wait_for(run_id, timeout_s=90)

    assert doc["state"] == "SUCCESS", doc
    assert system.get("/applications/gated")["name"] == "gated"


async def test_one_run_is_one_trace_across_gateway_planner_and_worker(
    system_factory: Any, tmp_path: Path
) -> None:
    system = system_factory()
    spans = tmp_path / "spans.jsonl"
    system.extra_env["IS_OTEL_EXPORTER"] = f"file:{spans}"
    system.start_all()
    system.upload_step("Noop", NOOP)
    system.upload_application({"name": "traced", "steps": [{"name": "n", "file": "Noop"}]})

    doc = await system.wait_for(system.run("traced")["id"])
    system.stop_all()

    assert doc["state"] == "SUCCESS"
    records = [json.loads(line) for line in spans.read_text().splitlines()]
    submit = next(r for r in records if r["name"] == "submit run"
                  and r["attributes"].get("run_id") == doc["id"])
    in_trace = {r["service"]: r for r in records if r["trace_id"] == submit["trace_id"]}
    assert set(in_trace) >= {"is-gateway", "is-planner", "is-stepworker"}
    names = {r["name"] for r in records if r["trace_id"] == submit["trace_id"]}
    assert {"plan run", "step attempt", "accept result"} <= names
