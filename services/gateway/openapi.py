"""The OpenAPI document and the docs page (Swagger UI at ``/schema``).

Handlers read their JSON bodies themselves (strict JSON with line and
column, ``jsonbody.py``), so Litestar cannot see the bodies: ``BODIES``
describes them, with the manual's examples. ``complete_schema`` adds them,
the error responses every route can give and the security schemes to the
generated document once, when the gateway starts.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from services.gateway.auth import ROUTE_ROLES, route_key

SCHEMA_PATH = "/schema"
# Swagger UI's scripts and styles (swagger-ui-bundle), served without login.
ASSETS_PATH = f"{SCHEMA_PATH}/assets"

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "detail", "field"],
    "properties": {
        "code": {"type": "string", "description": "Stable machine-readable error code.",
                 "example": "missing_parameter"},
        "detail": {"type": "string", "description": "What went wrong and what to do.",
                   "example": "Step 'Fetch devices' needs parameter 'host', which is not "
                              "set; set it on the step in application 'sync'."},
        "field": {"type": ["string", "null"], "description": "The offending input field.",
                  "example": "steps[0].host"},
    },
}
_ERRORS = {
    "400": "Invalid input: not JSON, a missing or malformed field (see `field`).",
    "401": "No credentials, or wrong ones.",
    "403": "The caller's role may not call this route.",
    "404": "The named thing does not exist.",
    "409": "Version conflict: the definition changed since it was read.",
    "413": "Request body larger than 16 MiB.",
    "500": "Internal error; it was logged. Never carries a traceback.",
    "503": "NATS or the store is unreachable; retry after `Retry-After` seconds.",
}

_APPLICATION_EXAMPLE = {
    "name": "cache_em7_device_data",
    "friendly_name": "Cache SL1 Devices using GraphQL",
    "description": "Read SL1 and ServiceNow devices and write them to a cache.",
    "author": "ScienceLogic, Inc.",
    "version": "1.0",
    "generate_report": True,
    "queue": "default",
    "app_variables": [{"name": "region", "value": "us-east", "required": True}],
    "steps": [
        {"name": "Fetch devices", "file": "FetchDevices", "output_to": ["Cache devices"]},
        {"name": "Cache devices", "file": "CacheDevices"},
    ],
}
_STEP_SOURCE = (
    "from ipaascore.BaseStep import BaseStep\n\n\n"
    "class FetchDevices(BaseStep):\n"
    "    def __init__(self):\n"
    "        self.friendly_name = \"Fetch devices\"\n"
    "        self.new_step_parameter(name=\"host\", description=\"SL1 host\", required=True)\n\n"
    "    def execute(self):\n"
    "        self.logger.info(\"fetching from %s\", self.get_parameter(\"host\"))\n"
    "        self.save_data_for_next_step([{\"id\": 1}])\n"
)


def _body(example: dict[str, Any], description: str,
          required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": True}
    if required:
        schema["required"] = list(required)
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


# Request bodies by route key (see ``auth.route_key``).
BODIES: dict[str, dict[str, Any]] = {
    "POST /applications": _body(
        _APPLICATION_EXAMPLE,
        "The application document (manual: Creating an Integration Application). "
        "Use `?expected_version=N` to refuse the write when someone changed it meanwhile.",
        ("name", "steps"),
    ),
    "POST /applications/run": _body(
        {"name": "cache_em7_device_data", "params": {"queue": "default"}},
        "`name` of the application; `params` override application variables and may "
        "set `queue` and `configuration` for this run.",
        ("name",),
    ),
    "POST /applications/{}/run": _body(
        {"params": {"region": "eu-west"}},
        "Optional: `params` override application variables for this run.",
    ),
    "POST /steps": _body(
        {"name": "FetchDevices", "data": _STEP_SOURCE},
        "`name`: the step file's name without `.py`; `data`: its Python source. "
        "Every changed upload becomes a new version.",
        ("name", "data"),
    ),
    "POST /steps/run": _body(
        {"name": "FetchDevices", "host": "sl1.example.com"},
        "`name` of the step plus the keys of its application entry (its parameters, "
        "`output_to` is ignored).",
        ("name",),
    ),
    "POST /configurations": _body(
        {"name": "prod", "description": "Production SL1",
         "configuration_data": [{"name": "sl1_host", "value": "10.0.0.1", "encrypted": False}]},
        "The configuration document (manual: Configurations).",
        ("name",),
    ),
    "POST /schedule": _body(
        {"application_id": "cache_em7_device_data", "entry_id": "nightly",
         "schedule": {"frequency": 3600}, "params": {}},
        "A schedule for an application: a frequency in seconds or a cron line.",
    ),
    "POST /users": _body(
        {"name": "alice", "password": "correct horse battery", "role": "editor"},
        "A new user: `role` is one of viewer, operator, editor, admin.",
        ("name", "password"),
    ),
    "PUT /users/{}": _body(
        {"password": "a new long password"},
        "`password` and/or `role` (changing roles needs role admin).",
    ),
    "POST /tokens": _body(
        {"label": "ci pipeline"},
        "Optional `label`. The answer holds the token once; store it.",
    ),
}

# Statuses a route may answer besides 200, beyond the ones every route has.
_EXTRA_STATUSES: dict[str, tuple[str, ...]] = {
    "POST /applications": ("409",),
    "POST /steps/run": ("202", "404"),
    "POST /applications/run": ("404",),
}


def openapi_config() -> OpenAPIConfig:
    """The gateway's OpenAPI settings: docs at ``/schema``, basic and bearer auth."""
    return OpenAPIConfig(
        title="Integration Service API",
        version="1.0.0",
        description=(
            "The IS API (manual: IS API). Every route but `/api/v1/health` needs "
            "credentials: HTTP basic (user `isadmin` at first) or `Authorization: Bearer "
            "ist_...` from `POST /api/v1/tokens`. Each route lists the least role it needs. "
            "Errors always have the body `{code, detail, field}`."
        ),
        path=SCHEMA_PATH,
        use_handler_docstrings=True,
        render_plugins=[
            # Swagger UI from this package's own copy, not a CDN: the docs
            # work on machines without internet access.
            SwaggerRenderPlugin(
                path=["/", "/swagger"],
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' href='{ASSETS_PATH}/favicon-32x32.png'>",
            ),
            RedocRenderPlugin(path="/redoc"),
            JsonRenderPlugin(path="/openapi.json"),
        ],
        components=Components(
            security_schemes={
                "basic": SecurityScheme(type="http", scheme="basic"),
                "bearer": SecurityScheme(type="http", scheme="bearer",
                                         bearer_format="ist_<id>_<secret>"),
            }
        ),
        security=[{"basic": []}, {"bearer": []}],
    )


def complete_schema(app: Litestar) -> dict[str, Any]:
    """Add bodies, error responses and roles to the app's cached OpenAPI document."""
    schema = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                _complete_operation(route_key(method, path), path, operation)
    return schema


def _complete_operation(key: str, path: str, operation: dict[str, Any]) -> None:
    if key in BODIES:
        operation["requestBody"] = BODIES[key]
    responses = operation.setdefault("responses", {})
    statuses = ["400", "500", "503"]
    if key != "GET /health":
        statuses += ["401", "403"]
    else:
        operation["security"] = []
    if re.search(r"\{[^}]+\}", path):
        statuses.append("404")
    statuses += [s for s in _EXTRA_STATUSES.get(key, ()) if s != "202"]
    for status in statuses:
        responses.setdefault(status, {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": _ERROR}},
        })
    if "202" in _EXTRA_STATUSES.get(key, ()):
        responses["202"] = {
            "description": "Accepted; not finished within `wait`. Query `GET /tasks/{id}`.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    role = ROUTE_ROLES.get(key)
    if role is not None:
        note = f"Needs role `{role.value}` or higher."
        operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
