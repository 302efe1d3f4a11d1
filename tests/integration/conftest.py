"""A real system for integration tests: nats-server plus service processes.

Each ``System`` has its own nats-server on an ephemeral port, its own data
directory and HTTP port, and runs the gateway, planner and stepworkers as
real subprocesses, so tests can kill and restart them. Waiting is driven
by the planner's run events on NATS, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from iscore import subjects
from iscore.natsserver import NatsServer, free_port

PASSWORD = "test-admin-password"
FINAL = {"SUCCESS", "FAILURE", "REVOKED"}
BIN = Path(sys.executable).parent


class System:
    """Processes of one test system and helpers to drive it over HTTP."""

    def __init__(self, root: Path, *, ack_wait_s: float = 30.0, worker_threads: int = 2) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(store_dir=root / "nats")
        self.http_port = free_port()
        self.ack_wait_s = ack_wait_s
        self.worker_threads = worker_threads
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.extra_env: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v1"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IS_")}
        env.update(
            IS_NATS_URL=self.nats.url,
            IS_DATA_DIR=str(self.data_dir),
            IS_HTTP_PORT=str(self.http_port),
            IS_ADMIN_PASSWORD=PASSWORD,
            IS_ACK_WAIT=str(self.ack_wait_s),
            IS_SHUTDOWN_GRACE="0.5",
            worker_threads=str(self.worker_threads),
            LOGLEVEL="DEBUG",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start_nats(self) -> None:
        self.nats.start(log_file=self.logs / "nats-server.log")

    def start(self, name: str, command: str, **extra: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as sink:
            self.processes[name] = subprocess.Popen(
                [str(BIN / command)], env=self.env(**extra), stdout=sink, stderr=sink
            )

    def start_all(self) -> None:
        self.start_nats()
        self.start("planner", "is-planner")
        self.start("worker", "is-stepworker", IS_WORKER_NAME="worker-1")
        self.start("gateway", "is-gateway")
        try:
            self.wait_ready()
        except BaseException:
            self.stop_all()
            raise

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Poll the health endpoint until it answers (a readiness probe)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited early:\n{self.log_tail(name)}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=1)
                if health.status_code == 200 and health.json().get("nats", True):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready:\n{self.log_tail('gateway')}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.processes.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        self.nats.stop()

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=("isadmin", PASSWORD), timeout=60)

    # Definitions -------------------------------------------------------------

    def upload_step(self, name: str, source: str) -> dict[str, Any]:
        with self.client() as http:
            reply = http.post("/steps", json={"name": name, "data": textwrap.dedent(source)})
        assert reply.status_code == 200, reply.text
        return reply.json()

    def upload_application(self, document: dict[str, Any]) -> dict[str, Any]:
        with self.client() as http:
            reply = http.post("/applications", json=document)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def run(self, name: str, params: dict[str, Any] | None = None,
            wait: float = 0) -> dict[str, Any]:
        with self.client() as http:
            reply = http.post(f"/applications/{name}/run", params={"wait": wait},
                              json={"params": params or {}})
        assert reply.status_code == 200, reply.text
        return reply.json()

    def get(self, path: str) -> dict[str, Any]:
        with self.client() as http:
            reply = http.get(path)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def find_task(self, task_id: str) -> dict[str, Any] | None:
        """GET /tasks/{id}; None while the planner has not recorded it yet."""
        with self.client() as http:
            reply = http.get(f"/tasks/{task_id}")
        if reply.status_code == 404:
            return None
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def wait_for(self, run_id: str, *, step_state: str | None = None,
                       timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the run is final (or, with ``step_state``, a step reaches it).

        Subscribes to the planner's run events first, then reads the status
        over HTTP after each event, so nothing is missed and nothing sleeps.
        """
        nc = await nats.connect(self.nats.url)
        try:
            sub = await nc.subscribe(subjects.run_event_subject(run_id))
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                doc = await asyncio.to_thread(self.find_task, run_id)
                if doc is not None and step_state is None and doc["state"] in FINAL:
                    return doc
                if doc and step_state and any(s["state"] == step_state for s in doc["steps"]):
                    return doc
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise TimeoutError(f"run {run_id} not done: {json.dumps(doc)}")
                try:
                    await sub.next_msg(timeout=min(remaining, 5.0))
                except nats.errors.TimeoutError:
                    continue
        finally:
            await nc.close()


@pytest.fixture
def system_factory(tmp_path: Path) -> Iterator[Any]:
    systems: list[System] = []

    def make(**kwargs: Any) -> System:
        system = System(tmp_path / f"system{len(systems)}", **kwargs)
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop_all()


@pytest.fixture
def system(system_factory: Any) -> System:
    sys_ = system_factory()
    sys_.start_all()
    return sys_


@pytest.fixture
async def nc(system: System) -> AsyncIterator[nats.aio.client.Client]:
    client = await nats.connect(system.nats.url)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def module_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One system shared by a module's tests; use unique names per test."""
    shared = System(tmp_path_factory.mktemp("module-system"))
    shared.start_all()
    yield shared
    shared.stop_all()
