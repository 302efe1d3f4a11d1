"""Property-based fuzzing driven by the gateway's own OpenAPI document.

Every operation the document lists is called with generated path
parameters, query parameters and JSON (or junk) bodies; the gateway must
never answer 5xx nor leak a traceback. Bounded so the file stays fast.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import System

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
BODY = (
    st.dictionaries(
        st.sampled_from(["name", "data", "params", "steps", "password", "role", "label",
                         "_version", "host", "configuration_data", "schedule"])
        | st.text(max_size=8),
        JSON, max_size=5,
    ).map(lambda d: json.dumps(d).encode())
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
)
SEGMENT = st.text(min_size=1, max_size=30).map(lambda s: quote(s, safe=""))
QUERY_VALUE = st.integers(-5, 2000).map(str) | st.text(max_size=20) | st.just("1e309")


@pytest.fixture(scope="module")
def operations(module_system: System) -> list[tuple[str, str, list[str]]]:
    root = module_system.url.removesuffix("/api/v1")
    with module_system.client() as http:
        document = http.get(f"{root}/schema/openapi.json").json()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete"):
                continue
            query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            found.append((method.upper(), path, query))
    return found


def test_generated_requests_never_get_5xx_or_a_traceback(
    module_system: System, operations: list[tuple[str, str, list[str]]]
) -> None:
    root = module_system.url.removesuffix("/api/v1")
    failures: list[str] = []

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def call(data: st.DataObject) -> None:
        method, template, query_names = data.draw(st.sampled_from(operations))
        path = re.sub(r"\{[^}]+\}", lambda _: data.draw(SEGMENT), template)
        chosen = data.draw(st.lists(st.sampled_from(query_names), unique=True)) \
            if query_names else []
        query = {name: data.draw(QUERY_VALUE) for name in chosen}
        body = data.draw(BODY) if method in ("POST", "PUT") else None
        reply = http.request(method, f"{root}{path}", params=query, content=body,
                             headers={"Content-Type": "application/json"})
        if reply.status_code >= 500 or "Traceback" in reply.text:
            failures.append(f"{method} {path} {query} -> {reply.status_code} {reply.text[:300]}")

    with httpx.Client(auth=("isadmin", "test-admin-password"), timeout=30) as http:
        call()

    assert failures == []


