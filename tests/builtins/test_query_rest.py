"""QueryREST against a real HTTP server on loopback (allowed by configuration)."""

from __future__ import annotations

import base64
from typing import Any

from iscore.builtins.catalog import step_source
from iscore.runtime.harness import StepRunResult, run_step

from tests.builtins.conftest import LocalServer

ALLOW_LOOPBACK = {"outbound_allow": "127.0.0.1"}


def query_rest(
    parameters: dict[str, Any],
    *,
    configuration: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> StepRunResult:
    return run_step(
        source=step_source("QueryREST"),
        file="QueryREST",
        parameters=parameters,
        configuration=ALLOW_LOOPBACK if configuration is None else configuration,
        inputs=inputs,
    )


def test_get_saves_response_data_and_selected_headers(http_server: LocalServer) -> None:
    http_server.json_route(
        "GET", "/api/devices?limit=2", [{"id": 1}], headers={"X-Total": "7", "X-Other": "no"}
    )

    result = query_rest(
        {
            "prefix_url": http_server.url,
            "relative_url": "/api/devices",
            "method": "GET",
            "params": {"limit": 2},
            "return_headers": ["X-Total"],
        }
    )

    assert result.succeeded, result.traceback
    assert result.data == {
        "status_code": 200,
        "url": f"{http_server.url}/api/devices",
        "data": [{"id": 1}],
        "headers": {"X-Total": "7"},
    }


def test_post_sends_payload_headers_and_basic_auth(http_server: LocalServer) -> None:
    http_server.json_route("POST", "/api/devices", {"created": True}, status=201)

    result = query_rest(
        {
            "prefix_url": http_server.url,
            "relative_url": "api/devices",
            "method": "post",
            "payload": {"name": "router-1"},
            "headers": {"X-Trace": "abc"},
            "auth": ["${config.user}", "secret"],
        },
        configuration={**ALLOW_LOOPBACK, "user": "admin"},
    )

    assert result.succeeded, result.traceback
    sent = http_server.received[0]
    assert sent.json() == {"name": "router-1"}
    assert sent.headers["X-Trace"] == "abc"
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:secret").decode()
    assert result.data["status_code"] == 201


def test_list_input_sends_one_request_per_item_with_generated_urls(
    http_server: LocalServer,
) -> None:
    for device_id in (3, 4):
        http_server.json_route("GET", f"/device/{device_id}", {"id": device_id})

    result = query_rest(
        {"prefix_url": http_server.url, "relative_url": "/device/${device_id}", "method": "GET"},
        inputs={"List devices": [{"device_id": 3}, {"device_id": 4}]},
    )

    assert result.succeeded, result.traceback
    assert [item["data"] for item in result.data] == [{"id": 3}, {"id": 4}]
    assert [r.path for r in http_server.received] == ["/device/3", "/device/4"]


def test_dict_input_fills_the_relative_url_once(http_server: LocalServer) -> None:
    http_server.json_route("GET", "/site/paris", {"site": "paris"})

    result = query_rest(
        {"prefix_url": http_server.url, "relative_url": "/site/${site}", "method": "GET"},
        inputs={"Pick site": {"site": "paris"}},
    )

    assert result.succeeded, result.traceback
    assert result.data["data"] == {"site": "paris"}


def test_scalar_list_items_are_available_as_item(http_server: LocalServer) -> None:
    http_server.json_route("GET", "/name/a", "A")

    result = query_rest(
        {"prefix_url": http_server.url, "relative_url": "/name/${item}", "method": "GET"},
        inputs={"Names": ["a"]},
    )

    assert result.succeeded, result.traceback
    assert result.data[0]["data"] == "A"


def test_text_input_is_refused_with_the_supported_types(http_server: LocalServer) -> None:
    result = query_rest(
        {"prefix_url": http_server.url, "method": "GET"}, inputs={"Text": "not a list"}
    )

    assert result.error_type == "StepFailedException"
    assert "list or a dict" in (result.error or "")
    assert http_server.received == []


def test_http_error_status_fails_the_step_with_the_body(http_server: LocalServer) -> None:
    http_server.route(
        "GET", "/boom", lambda _r: (503, {"Content-Type": "text/plain"}, b"maintenance")
    )

    result = query_rest({"prefix_url": http_server.url, "relative_url": "/boom", "method": "GET"})

    assert result.error_type == "OutboundRequestError"
    assert "HTTP 503" in (result.error or "")
    assert "maintenance" in (result.error or "")


def test_loopback_target_is_refused_without_configuration(http_server: LocalServer) -> None:
    http_server.json_route("GET", "/", {})

    result = query_rest({"prefix_url": http_server.url, "method": "GET"}, configuration={})

    assert result.error_type == "OutboundTargetRefusedError"
    assert "outbound_allow" in (result.error or "")
    assert http_server.received == []


def test_metadata_address_is_refused_even_when_link_local_is_allowed() -> None:
    result = query_rest(
        {"prefix_url": "http://169.254.169.254", "method": "GET", "timeout": 1},
        configuration={"outbound_allow": "169.254.0.0/16"},
    )

    assert result.error_type == "OutboundTargetRefusedError"
    assert "cloud metadata" in (result.error or "")


def test_missing_required_parameter_fails_before_any_request() -> None:
    result = query_rest({"prefix_url": "http://127.0.0.1:1"})

    assert result.error_type == "MissingRequiredStepParameter"
    assert "'method'" in (result.error or "")
