"""QueryGQL against a tiny GraphQL-over-HTTP server on loopback."""

from __future__ import annotations

import json
from typing import Any

from iscore.builtins.catalog import step_source
from iscore.runtime.harness import StepRunResult, run_step

from tests.builtins.conftest import LocalServer, Received, Reply

DEVICES = {"7": {"id": "7", "name": "router-7"}}


def graphql_endpoint(request: Received) -> Reply:
    """Answer ``device(id)`` queries the way a GraphQL server shapes its replies."""
    body = request.json()
    device = DEVICES.get(str(body.get("variables", {}).get("id")))
    if "device" not in body.get("query", ""):
        document: dict[str, Any] = {"errors": [{"message": "Cannot query field 'devic'."}]}
        return 400, {"Content-Type": "application/json"}, json.dumps(document).encode()
    if device is None:
        document = {
            "data": {"device": None},
            "errors": [{"message": "Device not found.", "path": ["device"]}],
        }
    else:
        document = {"data": {"device": device}}
    return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()


def query_gql(
    server: LocalServer, parameters: dict[str, Any], configuration: dict[str, Any] | None = None
) -> StepRunResult:
    server.route("POST", "/gql", graphql_endpoint)
    return run_step(
        source=step_source("QueryGQL"),
        file="QueryGQL",
        parameters={"prefix_url": server.url, "relative_url": "/gql", **parameters},
        configuration={"outbound_allow": ["127.0.0.1"]} if configuration is None else configuration,
    )


def test_query_with_variables_saves_the_data(http_server: LocalServer) -> None:
    result = query_gql(
        http_server,
        {
            "query": "query Device($id: ID!) { device(id: $id) { id name } }",
            "variables": {"id": "7"},
            "operation_name": "Device",
        },
    )

    assert result.succeeded, result.traceback
    assert result.data == {"device": {"id": "7", "name": "router-7"}}
    sent = http_server.received[0].json()
    assert sent["variables"] == {"id": "7"}
    assert sent["operationName"] == "Device"


def test_graphql_errors_fail_the_step_with_the_server_messages(
    http_server: LocalServer,
) -> None:
    result = query_gql(
        http_server, {"query": "query { device(id: $id) { id } }", "variables": {"id": "404"}}
    )

    assert result.error_type == "GraphQLError"
    assert "Device not found." in (result.error or "")


def test_errors_on_http_400_still_report_the_server_messages(
    http_server: LocalServer,
) -> None:
    result = query_gql(http_server, {"query": "query { devic { id } }"})

    assert result.error_type == "GraphQLError"
    assert "Cannot query field 'devic'." in (result.error or "")


def test_endpoint_that_is_not_graphql_fails_clearly(http_server: LocalServer) -> None:
    http_server.json_route("POST", "/rest", {"items": []})

    result = run_step(
        source=step_source("QueryGQL"),
        file="QueryGQL",
        parameters={"prefix_url": http_server.url, "relative_url": "/rest", "query": "{ x }"},
        configuration={"outbound_allow": "127.0.0.1"},
    )

    assert result.error_type == "OutboundRequestError"
    assert "not a GraphQL response" in (result.error or "")


def test_loopback_endpoint_is_refused_without_configuration(http_server: LocalServer) -> None:
    result = query_gql(http_server, {"query": "{ device(id: 7) { id } }"}, configuration={})

    assert result.error_type == "OutboundTargetRefusedError"
    assert http_server.received == []
