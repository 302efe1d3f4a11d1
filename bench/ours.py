"""The system under test: ``is-embedded`` as a subprocess, driven over NATS and HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgpack
import nats
from iscore.natsserver import free_port

from bench import procs

PASSWORD = "bench-admin-password"
BIN = Path(sys.executable).parent
STEPS_DIR = Path(__file__).parent / "steps"
# How is-embedded's banner ends, printed once everything answers.
READY_LINE = "Press Ctrl-C to stop."
# Longest wait for one measured unit of work, in s.
RUN_TIMEOUT_S = 900.0
FINAL_STATES = {"SUCCESS", "FAILURE", "REVOKED"}
# Run requests published concurrently when many runs are started at once.
PUBLISH_CONCURRENCY = 256


class EmbeddedSystem:
    """One ``is-embedded`` launcher with its services, on free ports."""

    def __init__(self, root: Path, *, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = dict(env or {})
        self.data_dir = root / "data"
        self.http_port = free_port()
        self.nats_port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v1"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def start(self) -> None:
        """Start the launcher and return once it says it is up."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("IS_") and k not in ("worker_threads", "user_queues")
        }
        env.update(
            IS_DATA_DIR=str(self.data_dir),
            IS_HTTP_PORT=str(self.http_port),
            IS_NATS_PORT=str(self.nats_port),
            IS_ADMIN_PASSWORD=PASSWORD,
            **self.env,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "embedded.log"
        with log.open("a") as sink:
            self.process = subprocess.Popen(
                [str(BIN / "is-embedded")], env=env, stdout=subprocess.PIPE, stderr=sink, text=True
            )
            assert self.process.stdout is not None
            # The launcher prints its banner once the gateway answers, and
            # exits (ending the pipe) if a service does not come up.
            for line in self.process.stdout:
                sink.write(line)
                if line.startswith(READY_LINE):
                    return
        raise SystemExit(f"is-embedded exited with code {self.process.wait()}; see {log}.")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()

    def service_pids(self) -> dict[str, int]:
        """Role -> pid of the launcher's direct children (services, nats-server)."""
        if self.process is None:
            return {}
        return {procs.role_of(pid): pid for pid in procs.children(self.process.pid)}

    def syncs_always(self) -> bool:
        """Whether the embedded nats-server runs with ``sync_interval: always``."""
        path = self.data_dir / "nats" / "nats-server.conf"
        return path.exists() and "sync_interval: always" in path.read_text()


def system_env(*, sync_always: bool = False, tasks_per_child: int = 1) -> dict[str, str]:
    """The settings of one measured variant of the embedded system."""
    env = {"IS_TASKS_PER_CHILD": str(tasks_per_child)}
    if sync_always:
        env["IS_NATS_SYNC_ALWAYS"] = "1"
    return env


def fan_out_application(name: str, width: int, *, join: bool) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"name": f"s{i:04d}", "file": "BenchNoop", **({"output_to": ["join"]} if join else {})}
        for i in range(width)
    ]
    if join:
        steps.append({"name": "join", "file": "BenchNoop"})
    return {"name": name, "friendly_name": name, "version": "1.0", "steps": steps}


def chain_application(name: str, length: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"name": f"s{i:02d}", "file": "BenchNoop", "output_to": [f"s{i + 1:02d}"]}
        for i in range(length - 1)
    ]
    steps.append({"name": f"s{length - 1:02d}", "file": "BenchNoop"})
    return {"name": name, "friendly_name": name, "version": "1.0", "steps": steps}


def hand_over_application(name: str, size_bytes: int) -> dict[str, Any]:
    return {
        "name": name,
        "friendly_name": name,
        "version": "1.0",
        "steps": [
            {
                "name": "make",
                "file": "BenchMakeData",
                "size_bytes": size_bytes,
                "output_to": ["take"],
            },
            {"name": "take", "file": "BenchTakeData"},
        ],
    }


class Client:
    """HTTP and NATS client of one system; run completion comes from run events."""

    def __init__(self, system: EmbeddedSystem) -> None:
        self.system = system
        self.http = httpx.AsyncClient(
            base_url=system.api, auth=("isadmin", PASSWORD), timeout=RUN_TIMEOUT_S
        )
        self.nc: Any = None
        self.js: Any = None
        self._waiting: dict[str, asyncio.Future[str]] = {}

    async def open(self) -> None:
        self.nc = await nats.connect(self.system.nats_url, name="bench")
        self.js = self.nc.jetstream(timeout=30)
        await self.nc.subscribe("is.event.run.>", cb=self._on_event)
        await self.nc.flush()

    async def close(self) -> None:
        await self.http.aclose()
        if self.nc is not None:
            await self.nc.close()

    async def _on_event(self, msg: Any) -> None:
        event = msgpack.unpackb(msg.data, raw=False)
        if event.get("step") is not None or event.get("task_id") is not None:
            return
        if event.get("state") not in FINAL_STATES:
            return
        future = self._waiting.pop(event.get("run_id", ""), None)
        if future is not None and not future.done():
            future.set_result(event["state"])

    async def upload_steps(self) -> None:
        for path in sorted(STEPS_DIR.glob("*.py")):
            reply = await self.http.post(
                "/steps", json={"name": path.stem, "data": path.read_text()}
            )
            reply.raise_for_status()

    async def upload_application(self, document: dict[str, Any]) -> None:
        reply = await self.http.post(
            "/applications",
            content=json.dumps(document),
            headers={"content-type": "application/json"},
        )
        reply.raise_for_status()

    async def start_nats(self, application: str) -> asyncio.Future[str]:
        """Publish a run request; the future resolves with the run's final state."""
        run_id = f"isapp-{uuid.uuid4()}"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[run_id] = future
        payload = msgpack.packb({"application": application, "params": {}, "run_id": run_id})
        await self.js.publish("is.run.request", payload, headers={"Nats-Msg-Id": run_id})
        return future

    async def run_nats(self, application: str) -> float:
        """One run started over NATS, from publish to its final event, in s."""
        started = time.perf_counter()
        future = await self.start_nats(application)
        state = await asyncio.wait_for(future, RUN_TIMEOUT_S)
        elapsed = time.perf_counter() - started
        _check_success(application, state)
        return elapsed

    async def run_http(self, application: str) -> float:
        """One ``POST /applications/{name}/run?wait=30`` round trip, in s."""
        started = time.perf_counter()
        reply = await self.http.post(f"/applications/{application}/run", params={"wait": 30})
        elapsed = time.perf_counter() - started
        reply.raise_for_status()
        _check_success(application, reply.json()["state"])
        return elapsed

    async def run_many_nats(self, application: str, count: int) -> float:
        """``count`` runs published at once; seconds until the last one ended."""
        started = time.perf_counter()
        gate = asyncio.Semaphore(PUBLISH_CONCURRENCY)

        async def submit() -> asyncio.Future[str]:
            async with gate:
                return await self.start_nats(application)

        futures = await asyncio.gather(*(submit() for _ in range(count)))
        states = await asyncio.wait_for(asyncio.gather(*futures), RUN_TIMEOUT_S)
        elapsed = time.perf_counter() - started
        for state in states:
            _check_success(application, state)
        return elapsed


def _check_success(application: str, state: str) -> None:
    if state != "SUCCESS":
        raise SystemExit(f"A benchmark run of {application!r} ended {state}; see the logs.")
