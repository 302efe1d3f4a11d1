"""Configurations and their encrypted values through the real services.

One system serves the module. A wiretap subscribed to every NATS subject
records each message from the first test on, and the last test searches
every place a secret could leak to for the canary values.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from iscore import subjects
from iscore.messages import RunEvent, decode
from iscore.secrets import MASK, key_id_of

from tests.integration.conftest import BIN, System

# Secret values that must never appear outside the step's child process.
CANARY = "cnry-7f3a9c-alpha-do-not-leak"
OTHER_CANARY = "cnry-51be02-beta-do-not-leak"

SECRET_USER = """
import hashlib

from ipaascore.BaseStep import BaseStep


class SecretUser(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="password", required=True)
        self.new_step_parameter(name="expected_sha256", required=True)
        self.new_step_parameter(name="mode", default_value="check")

    def execute(self):
        password = self.get_parameter("password")
        if hashlib.sha256(password.encode()).hexdigest() != self.get_parameter("expected_sha256"):
            raise ValueError("the step received another value than expected")
        mode = self.get_parameter("mode")
        if mode == "log":
            self.logger.info("connecting with password " + password)
        elif mode == "raise":
            print("stdout sees " + password)
            raise RuntimeError("login refused for " + password)
        elif mode == "save":
            self.save_data_for_next_step({"leak": "token=" + password})
            return
        self.save_data_for_next_step({"ok": True, "padding": "x" * 300})
"""

GATE = """
import os
import time

from ipaascore.BaseStep import BaseStep


class Gate(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="gate", required=True)

    def execute(self):
        deadline = time.monotonic() + 40
        while not os.path.exists(self.get_parameter("gate")):
            if time.monotonic() > deadline:
                raise TimeoutError("the gate never opened")
            time.sleep(0.05)
"""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Wiretap:
    """Records every message published on the NATS server, from a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[bytes] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="wiretap", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the wiretap did not subscribe")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.run(self._listen())

    async def _listen(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await nats.connect(self.url, pending_size=256 * 1024 * 1024)

        async def record(msg: Any) -> None:
            headers = repr(msg.headers or {}).encode()
            self.messages.append(msg.subject.encode() + b"\n" + headers + b"\n" + msg.data)

        await nc.subscribe(">", cb=record, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.drain()


class Recorder:
    """An API client that keeps every response body for the sweep."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.bodies: list[bytes] = []

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.system.client() as http:
            reply = http.request(method, path, **kwargs)
        self.bodies.append(reply.content)
        return reply


@pytest.fixture(scope="module")
def secret_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("secrets-system")
    system = System(root)
    system.extra_env["IS_OTEL_EXPORTER"] = f"file:{root / 'spans.jsonl'}"
    system.extra_env["IS_INLINE_LIMIT"] = "64"
    system.start_all()
    system.wiretap = Wiretap(system.nats.url)  # type: ignore[attr-defined]
    system.wiretap.start()  # type: ignore[attr-defined]
    system.recorder = Recorder(system)  # type: ignore[attr-defined]
    system.upload_step("SecretUser", SECRET_USER)
    system.upload_step("Gate", GATE)
    yield system
    system.wiretap.stop()  # type: ignore[attr-defined]
    system.stop_all()


def api(system: System) -> Recorder:
    recorder: Recorder = system.recorder  # type: ignore[attr-defined]
    return recorder


def upload_configuration(system: System, name: str, **values: tuple[Any, bool]) -> dict[str, Any]:
    document = {
        "name": name,
        "friendly_name": "Test settings",
        "configuration_data": [
            {"name": key, "value": value, "encrypted": encrypted}
            for key, (value, encrypted) in values.items()
        ],
    }
    reply = api(system).request("POST", "/configurations", json=document)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def secret_application(
    name: str, configuration: str, *, password: str, expected: str, mode: str = "check"
) -> dict[str, Any]:
    return {
        "name": name,
        "configuration": configuration,
        "steps": [
            {
                "name": "Use secret",
                "file": "SecretUser",
                "password": password,
                "expected_sha256": sha256(expected),
                "mode": mode,
            }
        ],
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def run_to_end(system: System, application: str, **params: Any) -> dict[str, Any]:
    # The gateway's wait answers once the run is final (or after 30 s).
    reply = api(system).request(
        "POST", f"/applications/{application}/run", params={"wait": 30}, json={"params": params}
    )
    assert reply.status_code == 200, reply.text
    doc = await system.wait_for(reply.json()["id"])
    for step in doc["steps"]:
        api(system).request("GET", f"/tasks/{step['id']}")
    api(system).request("GET", f"/tasks/{doc['id']}")
    return dict(doc)


async def start_gated_runs(system: System, application: str, count: int) -> list[str]:
    """Start runs and return once each has a step running (from run events)."""
    nc = await nats.connect(system.nats.url)
    try:
        events = await nc.subscribe(f"{subjects.RUN_EVENT_PREFIX}.>")
        run_ids = [(await asyncio.to_thread(system.run, application))["id"] for _ in range(count)]
        waiting = set(run_ids)
        while waiting:
            event = decode((await events.next_msg(timeout=30)).data, RunEvent)
            if event.state == "STARTED" and event.task_id is not None:
                waiting.discard(event.run_id)
    finally:
        await nc.close()
    return run_ids


def step_task(system: System, doc: dict[str, Any], index: int = 0) -> dict[str, Any]:
    reply = api(system).request("GET", f"/tasks/{doc['steps'][index]['id']}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def values_of(document: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item["value"] for item in document["configuration_data"]}


# The API ----------------------------------------------------------------------


def test_upload_stores_ciphertext_and_reads_return_it(secret_system: System) -> None:
    name = unique("stored")

    uploaded = upload_configuration(
        secret_system, name, host=("10.2.11.42", False), password=(CANARY, True)
    )
    fetched = api(secret_system).request("GET", f"/configurations/{name}").json()
    listed = api(secret_system).request("GET", "/configurations").json()

    assert values_of(uploaded)["host"] == "10.2.11.42"
    assert key_id_of(values_of(uploaded)["password"]) is not None
    assert values_of(fetched) == values_of(uploaded)
    assert any(doc["name"] == name for doc in listed)


def test_reading_with_mask_shows_no_ciphertext(secret_system: System) -> None:
    name = unique("masked")
    upload_configuration(secret_system, name, password=(CANARY, True), user=("me", False))

    fetched = api(secret_system).request("GET", f"/configurations/{name}?mask=true").json()

    assert values_of(fetched) == {"password": MASK, "user": "me"}


def test_downloaded_configuration_uploads_again_without_double_encryption(
    secret_system: System,
) -> None:
    name = unique("again")
    first = upload_configuration(secret_system, name, password=(CANARY, True))
    first.pop("_version")

    reply = api(secret_system).request("POST", "/configurations", json=first)
    masked = api(secret_system).request("GET", f"/configurations/{name}?mask=true").json()
    masked.pop("_version")
    remasked = api(secret_system).request("POST", "/configurations", json=masked)

    assert reply.status_code == 200
    assert values_of(reply.json()) == values_of(first)
    assert values_of(remasked.json()) == values_of(first)


def test_configuration_name_with_a_space_is_refused(secret_system: System) -> None:
    reply = api(secret_system).request(
        "POST", "/configurations", json={"name": "has space", "configuration_data": []}
    )

    assert reply.status_code == 400
    assert reply.json()["field"] == "name"


def test_unknown_configuration_answers_404(secret_system: System) -> None:
    fetched = api(secret_system).request("GET", "/configurations/never-uploaded")
    deleted = api(secret_system).request("DELETE", "/configurations/never-uploaded")

    assert fetched.status_code == 404
    assert fetched.json()["code"] == "configuration_not_found"
    assert deleted.status_code == 404


def test_deleted_configuration_is_gone(secret_system: System) -> None:
    name = unique("deleted")
    upload_configuration(secret_system, name, password=(CANARY, True))

    deleted = api(secret_system).request("DELETE", f"/configurations/{name}")
    fetched = api(secret_system).request("GET", f"/configurations/{name}")

    assert deleted.status_code == 200
    assert fetched.status_code == 404


def test_ciphertext_of_another_system_is_refused_at_upload(secret_system: System) -> None:
    foreign = "isenc:v1:kforeign0001:" + "A" * 60
    reply = api(secret_system).request(
        "POST",
        "/configurations",
        json={
            "name": unique("foreign"),
            "configuration_data": [{"name": "password", "value": foreign, "encrypted": True}],
        },
    )

    assert reply.status_code == 400
    assert "'password'" in reply.json()["detail"]
    assert reply.json()["field"] == "configuration_data[0].value"


# Runs -------------------------------------------------------------------------


async def test_step_receives_the_plaintext_and_its_log_line_is_masked(
    secret_system: System,
) -> None:
    config, application = unique("cfg"), unique("app")
    upload_configuration(secret_system, config, password=(CANARY, True))
    secret_system.upload_application(
        secret_application(
            application, config, password="${config.password}", expected=CANARY, mode="log"
        )
    )

    doc = await run_to_end(secret_system, application)

    assert doc["state"] == "SUCCESS", doc
    messages = [line["message"] for line in step_task(secret_system, doc)["logs"]]
    assert f"connecting with password {MASK}" in messages


async def test_run_params_choose_another_configuration(secret_system: System) -> None:
    first, second, application = unique("cfg"), unique("cfg"), unique("app")
    upload_configuration(secret_system, first, password=(CANARY, True))
    upload_configuration(secret_system, second, password=(OTHER_CANARY, True))
    secret_system.upload_application(
        secret_application(application, first, password="${config.password}", expected=OTHER_CANARY)
    )

    doc = await run_to_end(secret_system, application, configuration=second)

    assert doc["state"] == "SUCCESS", doc


async def test_step_failure_masks_the_secret_in_error_and_traceback(
    secret_system: System,
) -> None:
    config, application = unique("cfg"), unique("app")
    upload_configuration(secret_system, config, password=(CANARY, True))
    secret_system.upload_application(
        secret_application(
            application, config, password="${config.password}", expected=CANARY, mode="raise"
        )
    )

    doc = await run_to_end(secret_system, application)

    task = step_task(secret_system, doc)
    assert doc["state"] == "FAILURE"
    assert f"login refused for {MASK}" in task["traceback"]


async def test_saving_a_secret_for_the_next_step_fails_the_step(secret_system: System) -> None:
    config, application = unique("cfg"), unique("app")
    upload_configuration(secret_system, config, password=(CANARY, True))
    secret_system.upload_application(
        secret_application(
            application, config, password="${config.password}", expected=CANARY, mode="save"
        )
    )

    doc = await run_to_end(secret_system, application)

    task = step_task(secret_system, doc)
    assert doc["state"] == "FAILURE"
    assert "'password'" in task["error"]
    assert task["result"] is None


def _flip_bit(token: str) -> str:
    head, _, body = token.rpartition(":")
    middle = len(body) // 2
    swapped = "B" if body[middle] != "B" else "C"
    return f"{head}:{body[:middle]}{swapped}{body[middle + 1 :]}"


@pytest.mark.parametrize("damage", ["bit flip", "truncation", "swap"])
async def test_damaged_ciphertext_fails_the_step_naming_configuration_and_variable(
    secret_system: System, damage: str
) -> None:
    config, application = unique("cfg"), unique("app")
    stored = upload_configuration(
        secret_system, config, password=(CANARY, True), other=(OTHER_CANARY, True)
    )
    values = values_of(stored)
    damaged = {
        "bit flip": _flip_bit(values["password"]),
        "truncation": values["password"][:-12],
        "swap": values["other"],
    }[damage]
    stored["configuration_data"][0]["value"] = damaged
    stored.pop("_version")
    assert api(secret_system).request("POST", "/configurations", json=stored).status_code == 200
    secret_system.upload_application(
        secret_application(application, config, password="${config.password}", expected=CANARY)
    )

    doc = await run_to_end(secret_system, application)

    task = step_task(secret_system, doc)
    assert doc["state"] == "FAILURE"
    assert f"Variable 'password' of configuration {config!r} cannot be decrypted" in task["error"]


# Rotation ---------------------------------------------------------------------


def is_keys(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "is-keys"), *args],
        env=system.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_rotation_while_runs_are_in_flight_loses_nothing(
    secret_system: System, tmp_path: Path
) -> None:
    config, application = unique("cfg"), unique("app")
    gate = tmp_path / "gate"
    stored = upload_configuration(secret_system, config, password=(CANARY, True))
    old_key = key_id_of(values_of(stored)["password"])
    check = {
        "file": "SecretUser",
        "password": "${config.password}",
        "expected_sha256": sha256(CANARY),
    }
    secret_system.upload_application(
        {
            "name": application,
            "configuration": config,
            "steps": [
                {"name": "Wait", "file": "Gate", "gate": str(gate), "output_to": ["First"]},
                {"name": "First", **check, "output_to": ["Second"]},
                {"name": "Second", **check},
            ],
        }
    )
    started = await start_gated_runs(secret_system, application, 2)

    # Earlier tests stored damaged values on purpose; they stay unreadable.
    rotated = await asyncio.to_thread(is_keys, secret_system, "rotate", "--skip-unreadable")
    gate.touch()
    finished = [await secret_system.wait_for(run_id) for run_id in started]
    pruned = await asyncio.to_thread(is_keys, secret_system, "prune")
    after_prune = await run_to_end(secret_system, application)
    fetched = api(secret_system).request("GET", f"/configurations/{config}").json()

    assert rotated.returncode == 0, rotated.stderr
    assert [doc["state"] for doc in finished] == ["SUCCESS", "SUCCESS"], finished
    assert pruned.returncode == 0, pruned.stderr
    assert old_key in pruned.stdout
    assert after_prune["state"] == "SUCCESS", after_prune
    assert key_id_of(values_of(fetched)["password"]) not in (None, old_key)


# The sweep (keep last: it also searches what the tests above left behind) -----


def _files_under(root: Path) -> Iterator[Path]:
    yield from (path for path in root.rglob("*") if path.is_file())


async def _stream_messages(url: str) -> list[bytes]:
    nc = await nats.connect(url)
    found: list[bytes] = []
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            state = info.state
            if not state.messages:
                continue
            for seq in range(max(state.first_seq, 1), state.last_seq + 1):
                try:
                    msg = await js.get_msg(info.config.name, seq)
                except nats.js.errors.NotFoundError:
                    continue
                found.append(repr(msg.headers or {}).encode() + (msg.data or b""))
    finally:
        await nc.close()
    return found


async def test_canary_secrets_appear_in_no_response_log_span_row_or_message(
    secret_system: System,
) -> None:
    config, application = unique("canary"), unique("canary-app")
    stored = upload_configuration(
        secret_system, config, password=(CANARY, True), other=(OTHER_CANARY, True)
    )
    for mode in ("log", "raise", "check"):
        secret_system.upload_application(
            secret_application(
                f"{application}-{mode}",
                config,
                password="${config.password}",
                expected=CANARY,
                mode=mode,
            )
        )
        await run_to_end(secret_system, f"{application}-{mode}")
    for path in (
        "/configurations",
        f"/configurations/{config}",
        f"/configurations/{config}?mask=true",
        f"/applications/{application}-log/logs",
    ):
        api(secret_system).request("GET", path)
    streams = await _stream_messages(secret_system.nats.url)
    secret_system.wiretap.stop()  # type: ignore[attr-defined]
    # Stopped services have flushed their logs, spans and the SQLite file.
    secret_system.stop_all()

    places: dict[str, list[bytes]] = {
        "api response": api(secret_system).bodies,
        "nats message": secret_system.wiretap.messages,  # type: ignore[attr-defined]
        "stream message": streams,
    }
    for path in _files_under(secret_system.root):
        places.setdefault(str(path.relative_to(secret_system.root)), []).append(path.read_bytes())
    hits = [
        (place, canary)
        for place, blobs in places.items()
        for blob in blobs
        for canary in (CANARY, OTHER_CANARY)
        if canary.encode() in blob
    ]

    token = values_of(stored)["password"].encode()
    assert hits == []
    assert any(token in message for message in places["nats message"])
    assert (secret_system.root / "spans.jsonl").stat().st_size > 0
    assert any(name.startswith("data/is.db") for name in places)
    assert any(name.startswith("nats/") for name in places)
    assert any(name.startswith("logs/") for name in places)
