"""``make up``: the whole system on one machine, nothing to install first.

Starts a real nats-server (JetStream on the data directory), then the
gateway, planner, scheduler and stepworkers as child processes on loopback,
prints the URL and the credentials, and stops everything on Ctrl-C.
Definitions and runs live in the data directory, so a restart finds them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from iscore.keyring import KEY_FILE_ENV, prepare_key_file
from iscore.natsserver import NatsServer
from iscore.settings import Settings
from services.gateway.main import admin_password

# Port of the embedded nats-server; 4222 is often taken by a system NATS.
DEFAULT_NATS_PORT = 4250
READY_TIMEOUT_S = 60.0


def _service_env(settings: Settings, nats_url: str, password: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        IS_NATS_URL=nats_url,
        IS_DATA_DIR=str(settings.data_dir),
        IS_STORE_URL=settings.store_url,
        IS_ADMIN_PASSWORD=password,
    )
    return env


def _services(extra_queues: list[str]) -> list[tuple[str, list[str], dict[str, str]]]:
    bin_dir = Path(sys.executable).parent
    services = [
        ("planner", [str(bin_dir / "is-planner")], {}),
        ("stepworker", [str(bin_dir / "is-stepworker")], {"IS_WORKER_NAME": "worker-default"}),
        ("gateway", [str(bin_dir / "is-gateway")], {}),
        ("scheduler", [str(bin_dir / "is-scheduler")], {}),
    ]
    for queue in extra_queues:
        services.append(
            (
                f"stepworker-{queue}",
                [str(bin_dir / "is-stepworker")],
                {"user_queues": queue, "IS_WORKER_NAME": f"worker-{queue}"},
            )
        )
    return services


def _wait_for_gateway(url: str, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, proc in processes.items():
            if proc.poll() is not None:
                raise SystemExit(
                    f"The {name} service exited with code {proc.returncode}; "
                    "see its log in the data directory's logs/ folder."
                )
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"The gateway did not answer on {url} within {READY_TIMEOUT_S:.0f} s.")


def main() -> None:
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    password = admin_password(settings)
    nats_port = int(os.environ.get("IS_NATS_PORT", DEFAULT_NATS_PORT))
    extra_queues = [
        q.strip() for q in os.environ.get("IS_EXTRA_QUEUES", "").split(",") if q.strip()
    ]

    # The manual's encryption_key: made on first start, 0600, in the data dir.
    key_file = prepare_key_file(settings.data_dir)
    # IS_NATS_SYNC_ALWAYS=1: JetStream fsyncs every write (nats-server's
    # sync_interval: always) instead of every two minutes.
    sync_always = os.environ.get("IS_NATS_SYNC_ALWAYS", "").lower() in {"1", "true", "yes"}
    nats = NatsServer(store_dir=settings.data_dir / "nats", port=nats_port, sync_always=sync_always)
    nats.start(log_file=logs / "nats-server.log")
    env = _service_env(settings, nats.url, password)
    env[KEY_FILE_ENV] = str(key_file)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, argv, extra in _services(extra_queues):
            with (logs / f"{name}.log").open("ab") as sink:
                processes[name] = subprocess.Popen(
                    argv, env={**env, **extra}, stdout=sink, stderr=sink
                )
        url = f"http://{settings.http_host}:{settings.http_port}"
        _wait_for_gateway(url, processes)
        print(f"Integration Service is up at {url}/api/v1  (API docs: {url}/schema)")
        print(f"  user: isadmin   password: {password}")
        print(f"  NATS: {nats.url}   data: {settings.data_dir}   logs: {logs}")
        print(f"  encryption key: {env[KEY_FILE_ENV]}  (back it up; see is-keys)")
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    print(f"The {name} service exited with code {proc.returncode}; stopping.")
                    stopping = True
            time.sleep(0.5)
    finally:
        _stop_all(processes)
        nats.stop()
        print("Stopped.")


def _stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in reversed(processes.values()):
        if proc.poll() is None:
            proc.terminate()
    for proc in processes.values():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
