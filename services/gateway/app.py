"""The gateway's Litestar application: routes, auth, errors, limits, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from iscore.builtins import seed_builtins
from iscore.bus import Bus
from iscore.cache import open_bucket
from iscore.errors import IscoreError
from iscore.settings import Settings
from iscore.stores import open_store
from litestar import Litestar, Request, Response, Router, get
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router
from opentelemetry import trace
from swagger_ui_bundle import swagger_ui_path

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
from services.gateway.auth import AuthMiddleware, CredentialCache, require_role
from services.gateway.errors import (
    RETRY_AFTER_S,
    on_domain_error,
    on_http_error,
    on_unexpected_error,
)
from services.gateway.jsonbody import MAX_BODY_BYTES
from services.gateway.openapi import ASSETS_PATH, SCHEMA_PATH, complete_schema, openapi_config
from services.gateway.users import ensure_admin

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("is.gateway")
API_PREFIX = "/api/v1"
# Each module owns one resource and lists its handlers in ROUTES.
ROUTE_MODULES = (applications, runs, steps, configurations, tasks, schedules, reports, cache,
                 users)
# Seconds the health check waits for the store before calling it down.
HEALTH_STORE_TIMEOUT_S = 2.0


@get("/health", exclude_from_auth=True, include_in_schema=True)
async def health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Liveness and readiness; the only endpoint that needs no credentials.

    Answers 503 with ``Retry-After`` while NATS or the store is unreachable.
    """
    bus: Bus = request.app.state.bus
    nats_ok = bus.nc.is_connected
    try:
        async with asyncio.timeout(HEALTH_STORE_TIMEOUT_S):
            await request.app.state.store.get_user("isadmin")
        store_ok = True
    except (TimeoutError, IscoreError):
        store_ok = False
    ok = nats_ok and store_ok
    return Response(
        {"status": "ok" if ok else "unavailable", "nats": nats_ok, "store": store_ok},
        status_code=200 if ok else 503,
        headers=None if ok else {"Retry-After": RETRY_AFTER_S},
    )


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
    """Build the gateway for ``settings``; the store and bus open on startup.

    ``admin_password`` becomes the password of ``isadmin`` on first start
    (and again at every start when ``IS_ADMIN_PASSWORD`` sets it).
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.store = await open_store(settings.store_url)
        await seed_builtins(app.state.store)
        app.state.bus = await Bus.connect(
            settings.nats_url, name="is-gateway", result_expires_s=settings.result_expires_s
        )
        app.state.cache = await open_bucket(app.state.bus.js)
        app.state.credentials = CredentialCache()
        await ensure_admin(
            app.state.store, admin_password, authoritative=settings.admin_password is not None
        )
        complete_schema(app)
        log.info("gateway_started", port=settings.http_port)
        try:
            yield
        finally:
            await app.state.bus.close()
            await app.state.store.close()

    api = Router(
        path=API_PREFIX,
        route_handlers=[health, *(h for module in ROUTE_MODULES for h in module.ROUTES)],
        guards=[require_role],
    )
    # Swagger UI's files hold nothing private; the docs page loads them
    # before it has asked for credentials.
    assets = create_static_files_router(
        path=ASSETS_PATH,
        directories=[swagger_ui_path],
        include_in_schema=False,
        opt={"exclude_from_auth": True},
    )
    return Litestar(
        route_handlers=[api, assets],
        lifespan=[lifespan],
        middleware=[
            _trace_requests,
            DefineMiddleware(AuthMiddleware, exclude=[r"/health$"]),
        ],
        exception_handlers={
            IscoreError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_unexpected_error,
        },
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )


__all__ = ["API_PREFIX", "SCHEMA_PATH", "create_app"]
