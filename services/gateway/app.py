"""The gateway's Litestar application: routes, auth, errors, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Request, Router, get
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from opentelemetry import trace

from iscore.bus import Bus
from iscore.errors import IscoreError
from iscore.settings import Settings
from iscore.stores import open_store
from services.gateway import (
    applications,
    cache,
    configurations,
    reports,
    runs,
    schedules,
    steps,
    tasks,
    users,
)
from services.gateway.auth import BasicAuthMiddleware
from services.gateway.errors import on_domain_error, on_http_error, on_unexpected_error

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("is.gateway")
API_PREFIX = "/api/v1"
# Each module owns one resource and lists its handlers in ROUTES.
ROUTE_MODULES = (applications, runs, steps, configurations, tasks, schedules, reports, cache,
                 users)


@get("/health", exclude_from_auth=True)
async def health(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Liveness and readiness; the only endpoint that needs no credentials."""
    bus: Bus = request.app.state.bus
    return {"status": "ok", "nats": bus.nc.is_connected}


def _trace_requests(app: Any) -> Any:
    """ASGI middleware: one span per HTTP request, parent of everything after."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        name = f"{scope['method']} {scope['path']}"
        with tracer.start_as_current_span(name, attributes={"http.method": scope["method"]}):
            await app(scope, receive, send)

    return middleware


def create_app(settings: Settings, admin_password: str) -> Litestar:
    """Build the gateway for ``settings``; the store and bus open on startup."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.store = await open_store(settings.store_url)
        app.state.bus = await Bus.connect(
            settings.nats_url, name="is-gateway", result_expires_s=settings.result_expires_s
        )
        app.state.admin_password = admin_password
        log.info("gateway_started", port=settings.http_port)
        try:
            yield
        finally:
            await app.state.bus.close()
            await app.state.store.close()

    api = Router(
        path=API_PREFIX,
        route_handlers=[health, *(h for module in ROUTE_MODULES for h in module.ROUTES)],
    )
    return Litestar(
        route_handlers=[api],
        lifespan=[lifespan],
        middleware=[
            _trace_requests,
            DefineMiddleware(BasicAuthMiddleware, exclude=[r"^/schema", r"/health$"]),
        ],
        exception_handlers={
            IscoreError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_unexpected_error,
        },
        openapi_config=OpenAPIConfig(
            title="Integration Service API", version="1.0.0", path="/schema"
        ),
        request_max_body_size=16 * 1024 * 1024,
        debug=False,
    )
