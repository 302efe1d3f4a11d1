"""The outbound guard: which addresses steps may reach, and how it is enforced."""

from __future__ import annotations

import ipaddress

import pytest
from iscore.builtins.outbound import (
    OutboundPolicy,
    OutboundRequest,
    OutboundRequestError,
    OutboundTargetRefusedError,
    refusal_reason,
    send,
)

from tests.builtins.conftest import LocalServer


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.10.10", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "non-public"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_internal_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


def test_public_addresses_are_allowed() -> None:
    assert refusal_reason(ipaddress.ip_address("93.184.215.14")) is None
    assert refusal_reason(ipaddress.ip_address("2606:4700::1111")) is None


def test_allow_list_accepts_addresses_networks_and_host_names() -> None:
    policy = OutboundPolicy.from_value("127.0.0.1, 10.0.0.0/8 ,Intranet.Example.")

    policy.check("127.0.0.1", [ipaddress.ip_address("127.0.0.1")])
    policy.check("db", [ipaddress.ip_address("10.20.30.40")])
    policy.check("intranet.example", [ipaddress.ip_address("192.168.0.9")])
    with pytest.raises(OutboundTargetRefusedError):
        policy.check("db", [ipaddress.ip_address("192.168.0.9")])


def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    policy = OutboundPolicy()
    addresses = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.5")]

    with pytest.raises(OutboundTargetRefusedError) as caught:
        policy.check("mixed.example", addresses)

    assert caught.value.address == "10.0.0.5"
    assert caught.value.reason == "private"


def test_allow_list_of_another_type_is_refused() -> None:
    with pytest.raises(OutboundRequestError, match="outbound_allow"):
        OutboundPolicy.from_value({"hosts": ["a"]})


def test_loopback_target_is_refused_before_any_connection(http_server: LocalServer) -> None:
    http_server.json_route("GET", "/", {"ok": True})

    with pytest.raises(OutboundTargetRefusedError, match="outbound_allow"):
        send(OutboundRequest("GET", http_server.url), policy=OutboundPolicy())

    assert http_server.received == []


def test_localhost_name_is_refused_like_its_address(http_server: LocalServer) -> None:
    url = f"http://localhost:{http_server.port}/"

    with pytest.raises(OutboundTargetRefusedError) as caught:
        send(OutboundRequest("GET", url), policy=OutboundPolicy())

    assert caught.value.host == "localhost"
    assert http_server.received == []


def test_redirect_to_metadata_address_is_refused(http_server: LocalServer) -> None:
    http_server.route(
        "GET",
        "/go",
        lambda _r: (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
    )
    policy = OutboundPolicy.from_value(["127.0.0.1"])

    with pytest.raises(OutboundTargetRefusedError) as caught:
        send(OutboundRequest("GET", f"{http_server.url}/go"), policy=policy)

    assert caught.value.reason == "cloud metadata"


def test_redirects_within_allowed_targets_are_followed(http_server: LocalServer) -> None:
    http_server.route("GET", "/old", lambda _r: (301, {"Location": "/new"}, b""))
    http_server.json_route("GET", "/new", {"moved": True})
    policy = OutboundPolicy.from_value(["127.0.0.1"])

    response = send(OutboundRequest("GET", f"{http_server.url}/old"), policy=policy)

    assert response.json() == {"moved": True}


def test_non_http_urls_are_refused() -> None:
    with pytest.raises(OutboundRequestError, match="http://"):
        send(OutboundRequest("GET", "file:///etc/passwd"), policy=OutboundPolicy())


def test_unreachable_target_fails_with_the_url() -> None:
    policy = OutboundPolicy.from_value(["127.0.0.1"])

    with pytest.raises(OutboundRequestError, match=r"127\.0\.0\.1:1"):
        send(OutboundRequest("GET", "http://127.0.0.1:1/", timeout_s=2), policy=policy)
