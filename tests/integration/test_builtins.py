"""Built-in steps and the template application on a running system and MariaDB.

The MySQL* tests need the MariaDB server on 127.0.0.1:3306 (user root, no
password, database ``test``) and skip with the reason when it is absent.
Each test creates and drops its own uniquely named table.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pymysql
import pytest
from iscore.builtins.catalog import STEP_NAMES, step_source
from iscore.runtime.harness import StepRunResult, run_step

from tests.integration.conftest import System

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}


# MariaDB ---------------------------------------------------------------------


@pytest.fixture
def table() -> Iterator[str]:
    """A fresh table in database ``test``, dropped afterwards."""
    name = f"is_builtin_{uuid.uuid4().hex[:12]}"
    try:
        connection = pymysql.connect(**MARIADB, connect_timeout=3)  # type: ignore[arg-type]
    except pymysql.err.OperationalError as err:
        pytest.skip(f"MariaDB on 127.0.0.1:3306 is not reachable: {err}")
    with connection, connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE `{name}` (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
            "price DECIMAL(8,2) NULL, seen DATETIME NULL)"
        )
        connection.commit()
        yield name
        cursor.execute(f"DROP TABLE `{name}`")
        connection.commit()


def mysql_step(file: str, parameters: dict[str, Any], **options: Any) -> StepRunResult:
    connection = {k: v for k, v in MARIADB.items() if k != "password"}
    return run_step(
        source=step_source(file), file=file, parameters={**connection, **parameters}, **options
    )


def test_mysql_describe_returns_columns_and_types(table: str) -> None:
    result = mysql_step("MySQLDescribe", {"table": table})

    assert result.succeeded, result.traceback
    assert [(c["name"], c["type"], c["nullable"]) for c in result.data] == [
        ("id", "int(11)", False),
        ("name", "varchar(40)", False),
        ("price", "decimal(8,2)", True),
        ("seen", "datetime", True),
    ]
    assert result.data[0]["key"] == "PRI"


def test_mysql_describe_of_a_missing_table_fails_clearly(table: str) -> None:
    result = mysql_step("MySQLDescribe", {"table": f"{table}_missing"})

    assert result.error_type == "SqlStepError"
    assert "was not found" in (result.error or "")


def test_mysql_insert_sends_batches_from_previous_step_data(table: str) -> None:
    rows = [{"id": n, "name": f"device-{n}", "price": None, "seen": None} for n in range(5)]

    result = mysql_step("MySQLInsert", {"table": table, "batch_size": 2}, inputs={"Collect": rows})

    assert result.succeeded, result.traceback
    assert result.data == {"table": table, "inserted_count": 5, "batch_count": 3}
    selected = mysql_step("MySQLSelect", {"query": f"SELECT COUNT(*) AS n FROM `{table}`"})
    assert selected.data == [{"n": 5}]


def test_mysql_insert_rolls_back_every_batch_when_one_fails(table: str) -> None:
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 1, "name": "again"}]

    result = mysql_step("MySQLInsert", {"table": table, "rows": rows, "batch_size": 2})

    assert result.error_type == "IntegrityError"
    selected = mysql_step("MySQLSelect", {"query": f"SELECT COUNT(*) AS n FROM `{table}`"})
    assert selected.data == [{"n": 0}]


def test_mysql_values_with_quotes_are_bound_not_spliced(table: str) -> None:
    hostile = "x'); DROP TABLE devices; --"
    mysql_step("MySQLInsert", {"table": table, "rows": [{"id": 1, "name": hostile}]})

    result = mysql_step(
        "MySQLSelect",
        {
            "query": f"SELECT id, name, price FROM `{table}` WHERE name = %s",
            "query_params": [hostile],
        },
    )

    assert result.succeeded, result.traceback
    assert result.data == [{"id": 1, "name": hostile, "price": None}]


def test_mysql_select_binds_named_parameters_and_keeps_types(table: str) -> None:
    mysql_step(
        "MySQLInsert",
        {
            "table": table,
            "rows": [{"id": 1, "name": "a", "price": "9.50", "seen": "2024-05-01 10:00:00"}],
        },
    )

    result = mysql_step(
        "MySQLSelect",
        {
            "query": f"SELECT price, seen FROM `{table}` WHERE id = %(id)s",
            "query_params": {"id": 1},
        },
    )

    assert result.succeeded, result.traceback
    assert result.data[0]["price"] == "9.50"
    assert result.data[0]["seen"].isoformat() == "2024-05-01T10:00:00"


def test_mysql_select_cannot_write(table: str) -> None:
    result = mysql_step("MySQLSelect", {"query": f"DELETE FROM `{table}`"})

    assert result.error_type == "SqlStepError"


def test_mysql_wrong_password_is_a_connection_error(table: str) -> None:
    result = mysql_step(
        "MySQLDescribe", {"table": table, "user": "nobody_here", "password": "wrong"}
    )

    assert result.error_type == "SqlConnectionError"
    assert "127.0.0.1:3306" in (result.error or "")


# A running system --------------------------------------------------------------


class _Devices(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def rest_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Devices)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_every_builtin_step_is_registered_on_first_start(module_system: System) -> None:
    with module_system.client() as http:
        names = {step["name"] for step in http.get("/steps", params={"limit": 1000}).json()}

    assert set(STEP_NAMES) <= names


def test_step_template_is_served_for_copying(module_system: System) -> None:
    step = module_system.get("/steps/stepTemplate")

    assert step["data"] == step_source("stepTemplate")
    assert "class stepTemplate(BaseStep):" in step["data"]
    assert step["friendly_name"] == "Step Template"


def test_integration_template_is_the_template_app(module_system: System) -> None:
    application = module_system.get("/applications/integration_template")

    assert application["friendly_name"] == "Template App"
    assert {"author", "description", "name", "version", "steps"} <= set(application)


async def test_integration_template_runs_as_it_is(module_system: System) -> None:
    run = module_system.run("integration_template")

    done = await module_system.wait_for(run["id"])

    assert done["state"] == "SUCCESS", done
    last = next(s for s in done["steps"] if s["name"] == "Pass it on")
    task = module_system.get(f"/tasks/{last['id']}")
    assert "Received: Hello from the Template App" in json.dumps(task["result"])


def _rest_application(name: str, url: str, configuration: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "configuration": configuration,
        "steps": [
            {
                "name": "Get devices",
                "file": "QueryREST",
                "prefix_url": url,
                "relative_url": "/devices",
                "method": "GET",
            }
        ],
    }


async def test_query_rest_reaches_a_loopback_server_its_configuration_allows(
    module_system: System, rest_server: str
) -> None:
    with module_system.client() as http:
        reply = http.post(
            "/configurations",
            json={
                "name": "allow_loopback_rest",
                "configuration_data": [{"name": "outbound_allow", "value": "127.0.0.1"}],
            },
        )
        assert reply.status_code == 200, reply.text
    module_system.upload_application(
        _rest_application("builtin_rest_allowed", rest_server, "allow_loopback_rest")
    )

    done = await module_system.wait_for(module_system.run("builtin_rest_allowed")["id"])

    assert done["state"] == "SUCCESS", done
    task = module_system.get(f"/tasks/{done['steps'][0]['id']}")
    assert "/devices" in json.dumps(task["result"])


async def test_query_rest_refuses_a_loopback_server_without_configuration(
    module_system: System, rest_server: str
) -> None:
    module_system.upload_application(_rest_application("builtin_rest_refused", rest_server, None))

    done = await module_system.wait_for(module_system.run("builtin_rest_refused")["id"])

    assert done["state"] == "FAILURE"
    assert "outbound_allow" in (done["steps"][0]["traceback"] or "")
