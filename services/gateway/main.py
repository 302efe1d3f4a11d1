"""Entry point of the gateway service (``is-gateway``)."""

from __future__ import annotations

import secrets
import sys

import uvicorn

from iscore.logconfig import setup_logging
from iscore.settings import Settings
from iscore.telemetry import setup_telemetry, shutdown_telemetry
from services.gateway.app import create_app

ADMIN_PASSWORD_FILE = "admin-password"


def admin_password(settings: Settings) -> str:
    """``IS_ADMIN_PASSWORD``, else the one saved in the data dir on first start."""
    if settings.admin_password:
        return settings.admin_password
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    sys.stderr.write(f"Generated the isadmin password; it is in {path}\n")
    return password


def main() -> None:
    settings = Settings.from_env()
    setup_logging("gateway", settings.log_level)
    setup_telemetry("is-gateway", settings.otel_exporter)
    app = create_app(settings, admin_password(settings))
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning",
                lifespan="on")
    shutdown_telemetry()
