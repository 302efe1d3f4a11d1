"""``is-embedded``, what ``make up`` starts: settings from the environment,
a run end to end, a clean stop on Ctrl-C and a restart that finds it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iscore.natsserver import free_port

BIN = Path(sys.executable).parent
PASSWORD = "embedded-test-password"
UP_TIMEOUT_S = 90.0

ECHO = """\
from ipaascore.BaseStep import BaseStep


class Echo(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="word", required=True)

    def execute(self):
        self.save_data_for_next_step(self.get_parameter("word"))
"""


class Embedded:
    """One ``is-embedded`` launcher on free ports, stopped like a user would."""

    def __init__(self, data_dir: Path, **extra_env: str) -> None:
        self.data_dir = data_dir
        self.http_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IS_")}
        self.env.update(
            IS_DATA_DIR=str(data_dir),
            IS_HTTP_PORT=str(self.http_port),
            IS_NATS_PORT=str(free_port()),
            IS_ADMIN_PASSWORD=PASSWORD,
            **extra_env,
        )
        self.process: subprocess.Popen[str] | None = None
        self.banner: list[str] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "is-embedded")],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        # The launcher prints its banner once the gateway answers; readline
        # returns "" if it exits first, and the test timeout bounds the rest.
        for line in self.process.stdout:
            self.banner.append(line)
            if line.startswith("Press Ctrl-C"):
                return
        raise AssertionError("is-embedded exited before it was up:\n" + "".join(self.banner))

    def stop(self) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        rest, _ = self.process.communicate(timeout=60)
        return self.process.returncode, rest

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}/api/v1",
            auth=("isadmin", PASSWORD),
            timeout=60,
        )


@pytest.fixture
def launchers() -> Iterator[list[Embedded]]:
    started: list[Embedded] = []
    yield started
    for launcher in started:
        if launcher.process is not None and launcher.process.poll() is None:
            launcher.process.kill()
        if launcher.process is not None:
            launcher.process.communicate()


@pytest.mark.timeout(240)
def test_embedded_system_runs_stops_cleanly_and_finds_everything_after_a_restart(
    tmp_path: Path, launchers: list[Embedded]
) -> None:
    first = Embedded(tmp_path / "data", IS_NATS_SYNC_ALWAYS="1")
    launchers.append(first)
    first.start()

    with first.client() as http:
        assert http.post("/steps", json={"name": "Echo", "data": ECHO}).status_code == 200
        application = {
            "name": "echo_app",
            "steps": [{"name": "echo", "file": "Echo", "word": "hello"}],
        }
        assert http.post("/applications", json=application).status_code == 200
        run = http.post("/applications/echo_app/run", params={"wait": 30}).json()
    code, said = first.stop()

    banner = "".join(first.banner)
    assert f"http://127.0.0.1:{first.http_port}/api/v1" in banner
    assert f"password: {PASSWORD}" in banner
    assert run["state"] == "SUCCESS", run
    assert (code, said.strip().splitlines()[-1]) == (0, "Stopped.")
    config = (tmp_path / "data" / "nats" / "nats-server.conf").read_text()
    assert "sync_interval: always" in config

    second = Embedded(tmp_path / "data")
    launchers.append(second)
    second.start()
    with second.client() as http:
        found = http.get(f"/tasks/{run['id']}").json()
        step = http.get(f"/tasks/{found['steps'][0]['id']}").json()
        again = http.post("/applications/echo_app/run", params={"wait": 30}).json()
    second.stop()

    assert found["state"] == "SUCCESS"
    assert step["result"]["data"] == "hello"
    assert again["state"] == "SUCCESS", again
    assert "sync_interval" not in (tmp_path / "data" / "nats" / "nats-server.conf").read_text()
