"""Runs end to end through HTTP, NATS JetStream and real service processes."""

from __future__ import annotations

import uuid

import httpx
import msgpack
import nats

from tests.integration.conftest import System

PRODUCER = """
from ipaascore.BaseStep import BaseStep


class Producer(BaseStep):
    def __init__(self):
        self.friendly_name = "Producer"
        self.new_step_parameter(name="label", description="what to tag", required=True)

    def execute(self):
        self.logger.info("producing")
        self.save_data_for_next_step({"label": self.get_parameter("label"), "n": 1})
"""

CONSUMER = """
from ipaascore.BaseStep import BaseStep


class Consumer(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        data = self.get_data_from_step_by_name("First Query")
        self.logger.info("got %s" % data["label"])
        self.save_data_for_next_step({"seen": data["label"], "n": data["n"] + 1})
"""

JOINER = """
from ipaascore.BaseStep import BaseStep


class Joiner(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        self.save_data_for_next_step(sorted(self.join_previous_step_data()))
"""

LISTER = """
from ipaascore.BaseStep import BaseStep


class Lister(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="item", required=True)

    def execute(self):
        self.save_data_for_next_step([self.get_parameter("item")])
"""

BROKEN = """
from ipaascore.BaseStep import BaseStep


class Broken(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        raise ValueError("the device list is empty")
"""


def two_step_application() -> dict[str, object]:
    return {
        "name": "example_integration",
        "friendly_name": "Example",
        "version": "1.0",
        "steps": [
            {"name": "First Query", "file": "Producer", "label": "devices",
             "output_to": ["second Query"]},
            {"name": "second Query", "file": "Consumer"},
        ],
    }


async def test_manuals_two_step_output_to_example_runs_to_success(system: System) -> None:
    system.upload_step("Producer", PRODUCER)
    system.upload_step("Consumer", CONSUMER)
    system.upload_application(two_step_application())

    doc = system.run("example_integration", wait=20)
    if doc["state"] not in {"SUCCESS", "FAILURE"}:
        doc = await system.wait_for(doc["id"])

    assert doc["state"] == "SUCCESS", doc
    assert doc["id"].startswith("isapp-")
    assert [s["name"] for s in doc["steps"]] == ["First Query", "second Query"]
    second = system.get(doc["steps"][1]["href"].removeprefix("/api/v1"))
    assert second["result"]["data"] == {"seen": "devices", "n": 2}
    assert [line["message"] for line in second["logs"]] == ["got devices"]
    logs = system.get("/applications/example_integration/logs")
    assert logs["last_run"]["id"] == doc["id"]
    assert logs["triggered_by"] == [{"application_id": doc["id"], "triggered_by": "USER"}]


async def test_fan_in_of_three_steps_is_joined_in_application_order(system: System) -> None:
    system.upload_step("Lister", LISTER)
    system.upload_step("Joiner", JOINER)
    system.upload_application({
        "name": "fan_in",
        "steps": [
            {"name": "a", "file": "Lister", "item": "c", "output_to": ["join"]},
            {"name": "b", "file": "Lister", "item": "a", "output_to": ["join"]},
            {"name": "c", "file": "Lister", "item": "b", "output_to": ["join"]},
            {"name": "join", "file": "Joiner"},
        ],
    })

    doc = await system.wait_for(system.run("fan_in")["id"])

    assert doc["state"] == "SUCCESS", doc
    join = system.get(f"/tasks/{doc['steps'][3]['id']}")
    assert join["result"]["data"] == ["a", "b", "c"]


async def test_failed_step_fails_run_skips_dependents_and_independent_branch_finishes(
    system: System,
) -> None:
    system.upload_step("Broken", BROKEN)
    system.upload_step("Lister", LISTER)
    system.upload_step("Joiner", JOINER)
    system.upload_application({
        "name": "partly_broken",
        "steps": [
            {"name": "bad", "file": "Broken", "output_to": ["after bad"]},
            {"name": "after bad", "file": "Joiner"},
            {"name": "good", "file": "Lister", "item": "x", "output_to": ["after good"]},
            {"name": "after good", "file": "Joiner"},
        ],
    })

    doc = await system.wait_for(system.run("partly_broken")["id"])

    states = {s["name"]: s for s in doc["steps"]}
    assert doc["state"] == "FAILURE"
    assert "ValueError: the device list is empty" in states["bad"]["traceback"]
    assert 'Broken.py", line 10' in states["bad"]["traceback"]
    assert states["after bad"]["state"] == "FAILURE"
    assert "Not run" in states["after bad"]["error"]
    assert system.get(f"/tasks/{states['after bad']['id']}")["attempt"] == 0
    assert states["good"]["state"] == "SUCCESS"
    assert states["after good"]["state"] == "SUCCESS"


def test_application_with_a_cycle_is_refused_with_400_naming_the_steps(system: System) -> None:
    system.upload_step("Lister", LISTER)
    cyclic = {
        "name": "cyclic",
        "steps": [
            {"name": "one", "file": "Lister", "item": 1, "output_to": ["two"]},
            {"name": "two", "file": "Lister", "item": 2, "output_to": ["one"]},
        ],
    }

    with system.client() as http:
        reply = http.post("/applications", json=cyclic)

    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == "cycle"
    assert "'one'" in body["detail"] and "'two'" in body["detail"]


def test_run_missing_a_required_parameter_is_refused_before_anything_runs(
    system: System,
) -> None:
    system.upload_step("Lister", LISTER)
    system.upload_application({"name": "no_item", "steps": [{"name": "s", "file": "Lister"}]})

    with system.client() as http:
        reply = http.post("/applications/run", json={"name": "no_item", "params": {}})
        logs = http.get("/applications/no_item/logs")

    assert reply.status_code == 400
    assert reply.json()["code"] == "missing_parameter"
    assert "'item'" in reply.json()["detail"]
    assert logs.status_code == 404


def test_running_an_unknown_application_answers_404(system: System) -> None:
    with system.client() as http:
        reply = http.post("/applications/run", json={"name": "nope", "params": {}})

    assert reply.status_code == 404
    assert reply.json()["code"] == "application_not_found"


def test_invalid_json_body_gets_400_with_line_and_column(system: System) -> None:
    with system.client() as http:
        reply = http.post("/applications", content=b'{\n  "name": "x",\n  "steps": True\n}',
                          headers={"content-type": "application/json"})

    assert reply.status_code == 400
    assert "line 3 column" in reply.json()["detail"]


def test_requests_without_credentials_get_401_except_health(system: System) -> None:
    anonymous = httpx.get(f"{system.url}/applications")
    health = httpx.get(f"{system.url}/health")

    assert anonymous.status_code == 401
    assert health.status_code == 200


async def test_run_request_published_straight_on_nats_starts_a_run(
    system: System, nc: nats.aio.client.Client
) -> None:
    system.upload_step("Lister", LISTER)
    system.upload_application({"name": "from_nats",
                               "steps": [{"name": "s", "file": "Lister", "item": "n"}]})
    run_id = f"isapp-{uuid.uuid4()}"

    await nc.jetstream().publish(
        "is.run.request",
        msgpack.packb({"application": "from_nats", "params": {}, "run_id": run_id}),
        headers={"Nats-Msg-Id": run_id},
    )
    doc = await system.wait_for(run_id)

    assert doc["state"] == "SUCCESS"
    assert doc["app_name"] == "from_nats"
