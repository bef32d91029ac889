"""The one egress guard: every request the server makes on a team's behalf (model
providers, webhooks, MCP, OAuth token endpoints) goes through it.

Rules: http(s) only; the host is resolved and every address must be public: loopback,
private, link-local, multicast, reserved, unspecified and shared addresses are refused,
IPv4 and IPv6 alike, IPv4-mapped and 6to4/Teredo forms by the IPv4 address inside them,
unless the operator allows the host or its network in ``GENIE_EGRESS_ALLOW`` (host names
or CIDRs, comma-separated). The connection then goes to the address that was checked
(a second DNS answer cannot redirect it: no DNS rebinding), and each redirect is a new
request, checked again. The operator's own environment defaults (``GENIE_OPENAI_BASE_URL``)
are trusted and do not pass through here.

``validate_public_url`` is the save-time check (a Django validator: 400 in the API, a
form error in the admin); ``GuardedTransport`` is the call-time one, for ``httpx``, and
``GuardedAsyncTransport`` its async twin for ``httpx2`` (the HTTP client of the ``mcp``
package; openai's too). Both pin a request to its checked address the same way
(``pin_request``).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
import httpx2
from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_SCHEMES = frozenset({"http", "https"})


class EgressRefused(Exception):
    """A destination the guard does not let the server reach. Permanent: retrying the
    same URL gives the same answer."""

    code = "egress_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@cache
def _allowlist(raw: str) -> tuple[frozenset[str], tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]:
    hosts: set[str] = set()
    networks = []
    for item in (part.strip().lower() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
        except ValueError:
            hosts.add(item)
    return frozenset(hosts), tuple(networks)


def operator_allows(host: str, address: IPAddress | None = None) -> bool:
    hosts, networks = _allowlist(settings.GENIE_EGRESS_ALLOW)
    if host.lower().strip("[]") in hosts:
        return True
    return address is not None and any(address in network for network in networks)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped ``::ffff:a.b.c.d``, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: IPAddress) -> bool:
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def parse_destination(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of ``url``, or EgressRefused for anything but http(s) with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"{url!r} is not a valid URL.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise EgressRefused(f"Only http and https URLs are allowed, not {scheme or 'no scheme'}.")
    if not parts.hostname:
        raise EgressRefused("The URL has no host.")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EgressRefused(f"The host {host!r} could not be resolved.") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def checked_address(url: str) -> IPAddress:
    """The address to connect to for ``url``: resolved, every answer checked (one bad
    answer refuses the host: an attacker's DNS may rotate). Raises EgressRefused."""
    _, host, port = parse_destination(url)
    addresses = resolve(host, port)
    if operator_allows(host):
        return addresses[0]
    for address in addresses:
        if not (is_public(address) or operator_allows(host, address)):
            raise EgressRefused(
                f"{host} resolves to {address}, a non-public address; the operator can allow it in GENIE_EGRESS_ALLOW."
            )
    return addresses[0]


def validate_public_url(url: str) -> None:
    """Save-time check: a URL the HTTP clients (httpx, httpx2) can send, the scheme, and the
    host's addresses when it resolves now (a host that does not resolve yet is checked
    again at call time)."""
    if not url:
        return
    try:  # what Django's URLField lets through but the HTTP clients cannot send (a soft hyphen, a bad IDNA label)
        httpx.Request("POST", url)
        httpx2.Request("POST", url)
    except Exception as exc:
        raise ValidationError(f"This URL cannot be requested: {exc}", code="invalid_url") from exc
    try:
        _, host, port = parse_destination(url)
        try:
            resolve(host, port)
        except EgressRefused:
            return
        checked_address(url)
    except EgressRefused as exc:
        raise ValidationError(exc.message, code="egress_refused") from exc


def pin_request(request: httpx.Request | httpx2.Request, address: IPAddress) -> None:
    """Point ``request`` at ``address`` (the one ``checked_address`` returned), keeping the
    host name for the ``Host`` header and TLS (SNI and certificate verification)."""
    host = request.url.host
    request.url = request.url.copy_with(host=str(address))
    request.headers["Host"] = request.headers.get("Host") or host
    request.extensions = {**request.extensions, "sni_hostname": host}


class GuardedTransport(httpx.HTTPTransport):
    """An ``httpx`` transport that checks every request's destination (redirects are new
    requests: each is checked) and connects to the checked address."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pin_request(request, checked_address(str(request.url)))
        return super().handle_request(request)


class GuardedSyncTransport2(httpx2.HTTPTransport):
    """``GuardedTransport`` for a sync ``httpx2.Client`` (authlib's OAuth 2.0 client is one)."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        pin_request(request, checked_address(str(request.url)))
        return super().handle_request(request)


class GuardedAsyncTransport(httpx2.AsyncHTTPTransport):
    """``GuardedTransport`` for ``httpx2.AsyncClient``. The check resolves the host (a
    blocking ``getaddrinfo``), so it runs in a worker thread, not on the event loop."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        address = await anyio.to_thread.run_sync(checked_address, str(request.url))
        pin_request(request, address)
        return await super().handle_async_request(request)


def guarded_client(*, timeout: float, follow_redirects: bool = False) -> httpx.Client:
    """An ``httpx.Client`` whose every request passes the egress guard."""
    return httpx.Client(transport=GuardedTransport(), timeout=timeout, follow_redirects=follow_redirects)


def guarded_async_client(*, timeout: float, headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose every request passes the egress guard. It follows no
    redirects itself (a caller that follows one sends a new request: checked again)."""
    return httpx2.AsyncClient(transport=GuardedAsyncTransport(), timeout=timeout, headers=headers)
