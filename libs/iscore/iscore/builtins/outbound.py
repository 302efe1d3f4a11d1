"""Outbound HTTP for built-in steps, with a guard against internal targets.

A step that fetches a URL given in an application could be pointed at the
machine it runs on, the private network behind it or a cloud metadata
service (server-side request forgery). ``send`` resolves every host itself,
refuses addresses that are not public unless the run's configuration
allows them (variable ``outbound_allow``), then connects to the address it
checked, so a second DNS answer cannot swap in another target. Redirects
are followed hop by hop under the same check.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from iscore.errors import IscoreError
from iscore.runtime.basestep import BaseStep, current_context

__all__ = [
    "ALLOW_VARIABLE",
    "OutboundPolicy",
    "OutboundRequest",
    "OutboundRequestError",
    "OutboundTargetRefusedError",
    "check_status",
    "refusal_reason",
    "resolve",
    "response_data",
    "send",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Configuration variable listing the internal hosts, addresses and networks
# (CIDR) that steps of a run may reach: a list or a comma-separated string.
ALLOW_VARIABLE = "outbound_allow"

# Redirects followed for one request before giving up.
MAX_REDIRECTS = 5

# Instance metadata services of the main clouds. Most sit in link-local or
# private ranges already; they are named so a refusal says what they are,
# and so allowing "169.254.0.0/16" does not silently open them too.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class OutboundTargetRefusedError(IscoreError):
    """A URL points at an address steps may not reach without permission.

    ``host`` is the URL's host, ``address`` the resolved address refused and
    ``reason`` its kind (``loopback``, ``private``, ``cloud metadata`` ...).
    """

    code = "outbound_target_refused"

    def __init__(self, host: str, address: str, reason: str) -> None:
        names = repr(address) if host == address else f"{host!r} or {address!r}"
        super().__init__(
            f"URL host {host!r} is {address}, a {reason} address, which steps may not "
            f"reach by default; list {names} in configuration variable {ALLOW_VARIABLE!r} "
            "of the run's configuration to allow it.",
            field="prefix_url",
        )
        self.host = host
        self.address = address
        self.reason = reason


class OutboundRequestError(IscoreError):
    """An outbound request could not be made or its target answered with an error.

    ``url`` is the URL requested; ``status_code`` is set when the target
    answered with an HTTP error status.
    """

    code = "outbound_request_failed"

    def __init__(self, message: str, *, url: str, status_code: int | None = None) -> None:
        super().__init__(message, field="prefix_url")
        self.url = url
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Which internal targets one run allows; public addresses are always allowed.

    ``hosts`` are host names (lower case) allowed whatever they resolve to;
    ``networks`` are addresses and CIDR networks allowed.
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_value(cls, value: Any) -> OutboundPolicy:
        """Build a policy from the ``outbound_allow`` value of a configuration.

        Accepts None, a comma-separated string or a list of strings; each
        item is an IP address, a CIDR network or a host name. Raises
        ``OutboundRequestError`` for a value of another type.
        """
        if value is None or value == "":
            return cls()
        if isinstance(value, str):
            items: Iterable[Any] = value.split(",")
        elif isinstance(value, list | tuple):
            items = value
        else:
            raise OutboundRequestError(
                f"Configuration variable {ALLOW_VARIABLE!r} must be a list of hosts, addresses "
                f"and networks or a comma-separated string, found {type(value).__name__}.",
                url="",
            )
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                hosts.add(text.lower().rstrip("."))
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    @classmethod
    def for_step(cls, step: BaseStep) -> OutboundPolicy:
        """Return the policy of the run ``step`` belongs to (its configuration)."""
        configuration = current_context(step).invocation.configuration
        return cls.from_value(configuration.get(ALLOW_VARIABLE))

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise ``OutboundTargetRefusedError`` unless every address may be reached.

        All addresses must pass: a name that resolves to one public and one
        internal address is refused, whichever the connection would use. A
        cloud metadata address passes only when listed exactly.
        """
        if host.lower().rstrip(".") in self.hosts:
            return
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None and not self._allows(address, reason):
                raise OutboundTargetRefusedError(host, str(address), reason)

    def _allows(self, address: IPAddress, reason: str) -> bool:
        if reason == "cloud metadata":
            # Only the exact address opens a metadata service, never a range.
            return any(net.num_addresses == 1 and address in net for net in self.networks)
        return any(address in net for net in self.networks)


def refusal_reason(address: IPAddress) -> str | None:
    """Return why ``address`` is internal (``"loopback"`` ...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        (address in METADATA_ADDRESSES, "cloud metadata"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_unspecified, "unspecified"),
        (address.is_multicast, "multicast"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-public"),
    )
    return next((reason for matched, reason in checks if matched), None)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Return the addresses ``host`` resolves to (itself for an IP literal).

    Raises ``OutboundRequestError`` when the name does not resolve.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise OutboundRequestError(
            f"Host {host!r} does not resolve ({err}); check the URL.", url=host
        ) from err
    addresses: list[IPAddress] = []
    for *_, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One HTTP request a step makes.

    ``json`` and ``content`` are alternative bodies. ``auth`` is a user name
    and password for basic authentication, sent only to the first URL's
    origin. ``timeout_s`` bounds connecting and each read. ``verify`` turns
    TLS certificate checks off (False) or names a CA bundle file.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    content: str | bytes | None = None
    auth: tuple[str, str] | None = None
    timeout_s: float = 30.0
    verify: bool | str = True
    follow_redirects: bool = True


def send(request: OutboundRequest, *, policy: OutboundPolicy) -> httpx.Response:
    """Send ``request``, checking every hop's target against ``policy``.

    Returns the final response with its body read; HTTP error statuses are
    returned, not raised. Raises ``OutboundTargetRefusedError`` for a
    refused target and ``OutboundRequestError`` for a bad URL, a transport
    failure or too many redirects. Proxy settings from the environment are
    ignored, so the checked address is the one connected to.
    """
    with httpx.Client(
        trust_env=False, verify=_tls(request.verify), timeout=request.timeout_s
    ) as client:
        url = _parse_url(request.url)
        if request.params:
            url = url.copy_merge_params(dict(request.params))
        origin = (url.scheme, url.host, url.port)
        method, body = request.method.upper(), _body(request)
        headers = dict(request.headers)
        for _ in range(MAX_REDIRECTS + 1):
            same_origin = (url.scheme, url.host, url.port) == origin
            response = _send_pinned(
                client, method, url, headers, body, request, policy, with_auth=same_origin
            )
            if not (request.follow_redirects and response.status_code in _REDIRECT_STATUSES):
                return response
            url = _parse_url(str(url.join(response.headers.get("location", ""))))
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, body = "GET", {}
            if (url.scheme, url.host, url.port) != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    raise OutboundRequestError(
        f"URL {request.url!r} redirected more than {MAX_REDIRECTS} times; request the final "
        "URL directly.",
        url=request.url,
    )


def _send_pinned(
    client: httpx.Client,
    method: str,
    url: httpx.URL,
    headers: dict[str, str],
    body: dict[str, Any],
    request: OutboundRequest,
    policy: OutboundPolicy,
    *,
    with_auth: bool,
) -> httpx.Response:
    """Send one hop to the address that was checked, keeping name and TLS name."""
    port = url.port or _DEFAULT_PORTS[url.scheme]
    addresses = resolve(url.host, port)
    policy.check(url.host, addresses)

    pinned = url.copy_with(host=str(addresses[0]))
    hop_headers = {**headers, "Host": url.netloc.decode("ascii").rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    auth = httpx.BasicAuth(*request.auth) if with_auth and request.auth else None
    built = client.build_request(method, pinned, headers=hop_headers, extensions=extensions, **body)
    try:
        return client.send(built, auth=auth)
    except httpx.HTTPError as err:
        raise OutboundRequestError(
            f"Request {method} {url} failed: {type(err).__name__}: {err}; check the URL and "
            "that the target is reachable.",
            url=str(url),
        ) from err


def _parse_url(text: str) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as err:
        raise OutboundRequestError(f"URL {text!r} is not valid: {err}.", url=text) from err
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        raise OutboundRequestError(
            f"URL {text!r} is not an absolute http:// or https:// URL; set prefix_url to "
            "one, like 'https://host.example'.",
            url=text,
        )
    return url


def _body(request: OutboundRequest) -> dict[str, Any]:
    if request.json is not None:
        return {"json": request.json}
    if request.content is not None:
        return {"content": request.content}
    return {}


def _tls(verify: bool | str) -> ssl.SSLContext | bool:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def response_data(response: httpx.Response) -> Any:
    """Return a response body as step data: parsed JSON, text, bytes or None.

    JSON media types are parsed; text-like ones (``text/*``, XML, anything
    with a charset) are decoded; other bodies stay bytes. Raises
    ``OutboundRequestError`` for a JSON body that does not parse.
    """
    if not response.content:
        return None
    media_type = response.headers.get("content-type", "").lower()
    if "json" in media_type:
        try:
            return response.json()
        except ValueError as err:
            raise OutboundRequestError(
                f"Response of {response.request.method} {response.url} says it is JSON but "
                f"does not parse: {err}.",
                url=str(response.url),
                status_code=response.status_code,
            ) from err
    if media_type.startswith("text/") or "xml" in media_type or "charset=" in media_type:
        return response.text
    return response.content


def check_status(response: httpx.Response, url: str) -> None:
    """Raise ``OutboundRequestError`` when ``response`` has a 4xx or 5xx status.

    The message quotes the start of the body, which usually says why.
    """
    if response.status_code < 400:
        return
    excerpt = response.text[:300].strip() if response.content else ""
    said = f": {excerpt}" if excerpt else ""
    raise OutboundRequestError(
        f"{response.request.method} {url} answered HTTP {response.status_code}{said}.",
        url=url,
        status_code=response.status_code,
    )
