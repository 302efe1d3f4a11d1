"""Authentication and the role table, route by route, against a real gateway."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from services.gateway.auth import ROUTE_ROLES, route_key
from tests.integration.conftest import PASSWORD, System

ROLES = ("viewer", "operator", "editor", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}


def _user(system: System, role: str) -> tuple[str, str]:
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    with system.client() as http:
        reply = http.post("/users", json={"name": name, "password": password, "role": role})
    assert reply.status_code == 201, reply.text
    return name, password


@pytest.fixture(scope="module")
def accounts(module_system: System) -> dict[str, tuple[str, str]]:
    made = {role: _user(module_system, role) for role in ROLES[:3]}
    made["admin"] = ("isadmin", PASSWORD)
    return made


@pytest.fixture(scope="module")
def routes(module_system: System) -> list[str]:
    """Route keys the running gateway serves, from its OpenAPI document."""
    with module_system.client() as http:
        document = http.get(module_system.url.removesuffix("/api/v1") + "/schema/openapi.json")
    assert document.status_code == 200, document.text
    return sorted(
        route_key(method, path)
        for path, item in document.json()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete")
    )


def test_every_served_route_has_a_row_in_the_role_table(routes: list[str]) -> None:
    assert [key for key in routes if key not in ROUTE_ROLES] == []


def _concrete(path: str) -> str:
    return re.sub(r"\{\}", "no-such-thing", path)


def test_every_route_but_health_refuses_requests_without_credentials(
    module_system: System, routes: list[str]
) -> None:
    with httpx.Client(base_url=module_system.url, timeout=30) as anonymous:
        answers = {
            key: anonymous.request(key.split()[0], _concrete(key.split()[1]))
            for key in routes
            if key != "GET /health"
        }
        health = anonymous.get("/health")

    assert health.status_code == 200
    refused = {key: reply.status_code for key, reply in answers.items()}
    assert set(refused.values()) == {401}, refused
    body = next(iter(answers.values())).json()
    assert body["code"] == "unauthorized"
    assert "WWW-Authenticate" in next(iter(answers.values())).headers


def test_wrong_password_is_refused_with_401(module_system: System) -> None:
    with httpx.Client(base_url=module_system.url, auth=("isadmin", "wrong-password")) as http:
        reply = http.get("/applications")

    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthorized"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_refused_exactly_the_routes_above_it(
    module_system: System, accounts: dict[str, tuple[str, str]], routes: list[str], role: str
) -> None:
    with httpx.Client(base_url=module_system.url, auth=accounts[role], timeout=30) as http:
        answers = {
            key: http.request(key.split()[0], _concrete(key.split()[1]))
            for key in routes
            if key != "GET /health" and not key.startswith(("PUT /users", "DELETE /users"))
        }

    wrong = {
        key: reply.status_code
        for key, reply in answers.items()
        if (reply.status_code == 403) != (RANK[role] < RANK[ROUTE_ROLES[key].value])
    }
    assert wrong == {}


def test_api_token_authenticates_with_its_users_role_until_revoked(
    module_system: System,
) -> None:
    viewer = _user(module_system, "viewer")
    with httpx.Client(base_url=module_system.url, auth=viewer) as http:
        created = http.post("/tokens", json={"label": "ci"}).json()
        listed = http.get("/tokens").json()
    bearer = {"Authorization": f"Bearer {created['token']}"}
    with httpx.Client(base_url=module_system.url, headers=bearer) as http:
        whoami = http.get("/whoami").json()
        write = http.post("/applications", json={"name": "x", "steps": []})
        with httpx.Client(base_url=module_system.url, auth=viewer) as owner:
            revoked = owner.delete(f"/tokens/{created['token_id']}")
        after = http.get("/whoami")

    assert created["token"].startswith("ist_")
    assert [t["token_id"] for t in listed] == [created["token_id"]]
    assert "token" not in listed[0]
    assert whoami == {"name": viewer[0], "role": "viewer"}
    assert write.status_code == 403
    assert revoked.status_code == 200
    assert after.status_code == 401


def test_user_changes_own_password_but_not_own_role(
    module_system: System,
) -> None:
    name, password = _user(module_system, "operator")
    with httpx.Client(base_url=module_system.url, auth=(name, password)) as http:
        promote = http.put(f"/users/{name}", json={"role": "admin"})
        change = http.put(f"/users/{name}", json={"password": "a-new-long-password"})
    with httpx.Client(base_url=module_system.url, auth=(name, "a-new-long-password")) as http:
        me = http.get("/whoami")

    assert promote.status_code == 403
    assert change.status_code == 200
    assert me.json()["role"] == "operator"


def test_users_are_managed_by_administrators(module_system: System) -> None:
    name = f"u-{uuid.uuid4().hex[:8]}"
    with module_system.client() as http:
        created = http.post("/users", json={"name": name, "password": "long-enough-1",
                                            "role": "editor"})
        duplicate = http.post("/users", json={"name": name, "password": "long-enough-1"})
        short = http.post("/users", json={"name": f"{name}x", "password": "short"})
        bad_role = http.post("/users", json={"name": f"{name}y", "password": "long-enough-1",
                                             "role": "root"})
        one = http.get(f"/users/{name}")
        everyone = http.get("/users", params={"limit": 1000})
        removed = http.delete(f"/users/{name}")
        gone = http.get(f"/users/{name}")
        admin_delete = http.delete("/users/isadmin")

    assert created.status_code == 201
    assert created.json() == {**created.json(), "name": name, "role": "editor"}
    assert "password_hash" not in created.json()
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "user_exists"
    assert (short.status_code, short.json()["field"]) == (400, "password")
    assert (bad_role.status_code, bad_role.json()["field"]) == (400, "role")
    assert one.json()["role"] == "editor"
    assert name in [u["name"] for u in everyone.json()]
    assert removed.status_code == 200
    assert gone.status_code == 404
    assert admin_delete.status_code == 400


def test_passwords_are_stored_as_argon2_hashes(module_system: System) -> None:
    import sqlite3

    conn = sqlite3.connect(module_system.data_dir / "is.db")
    try:
        stored = conn.execute("SELECT password_hash FROM users WHERE name = 'isadmin'").fetchone()
    finally:
        conn.close()

    assert stored[0].startswith("$argon2id$")
    assert PASSWORD not in stored[0]


