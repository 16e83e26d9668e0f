"""The SSRF guard of every request Propylon sends to an identity provider (DESIGN §5).

IdP URLs come from admins (discovery, JWKS, registration endpoints) and from IdPs' own answers
(``registration_client_uri``, a discovered ``jwks_uri``), and the dashboard and the gateways
usually sit inside a network they should not let anyone probe. Both planes use this one guard:
the dashboard through ``idp.outbound``, the gateway for its JWKS and discovery fetches. So
before a connection is opened its host is resolved and **every** address it resolves to must be
public: loopback, private (RFC 1918, IPv6 unique local), link-local,
shared/CGNAT (100.64.0.0/10), multicast, reserved, unspecified and other non-global addresses are
refused, IPv6 addresses that embed IPv4 ones (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
``64:ff9b::/96``, Teredo) are judged by the IPv4 addresses they carry, unless the address is
in an explicitly allowed network (``PROPYLON_OUTBOUND_ALLOWED_NETWORKS``, for IdPs on a private
network; the tests allow 127.0.0.0/8).

The check and the connection cannot drift apart (no DNS-rebinding window): :class:`GuardedTransport`
connects to the very address that was checked, through an httpcore network backend that resolves,
checks and connects in one step, while TLS still verifies the certificate against the URL's host
name (httpcore sends the origin's host as SNI and checks it, whatever address the socket reached).
A refusal is :class:`AddressRefused`, whose message names the address and its class.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressRefused(Exception):
    """A host resolved to an address the guard refuses (or did not resolve)."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host
        self.message = message


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings (``10.0.0.0/8``, ``fd00::/8``, a bare address) as networks; ``ValueError``
    names the first bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP network in CIDR notation") from exc
    return tuple(networks)


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, NAT64, Teredo server and client)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.teredo is not None:
        found.extend(address.teredo)
    return [item for item in found if item is not None]


def address_class(address: IPAddress) -> str | None:
    """Why ``address`` is not a public one (``"loopback"``, ``"private"``…), or None if it is."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared (CGNAT)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


class OutboundGuard:
    """Which addresses outbound IdP requests may reach: public ones, plus ``allowed_networks``."""

    def __init__(self, allowed_networks: Iterable[str | IPNetwork] = ()) -> None:
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(
            network if isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
            else parse_networks([network])[0]
            for network in allowed_networks
        )

    def __repr__(self) -> str:
        return f"OutboundGuard({[str(network) for network in self.allowed_networks]})"

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be reached (its class), or None when it may."""
        carried = embedded_ipv4(address)
        if any(candidate in network for candidate in [address, *carried]
               for network in self.allowed_networks if candidate.version == network.version):
            return None
        # An address that carries IPv4 is what it carries (the IPv6 wrapper itself is "reserved" or
        # "not global" by definition, whatever the IPv4 address behind it).
        candidates: list[IPAddress] = list(carried) or [address]
        for candidate in candidates:
            kind = address_class(candidate)
            if kind is not None:
                inside = "" if candidate == address else f" (it carries {candidate})"
                article = "an" if kind[0] in "aeiou" else "a"
                return f"{article} {kind} address{inside}"
        return None

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, every one checked; :class:`AddressRefused` if any is refused
        (a host with one public and one private address is refused: which one a connection would
        reach must not be up to chance)."""
        literal = host.strip("[]")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(literal, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise AddressRefused(host, f"{host} does not resolve ({exc})") from exc
        addresses: list[str] = []
        for info in infos:
            text = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id is not part of the address
            address = ipaddress.ip_address(text)
            why = self.refusal(address)
            if why is not None:
                shown = host if host == text else f"{host} ({text})"
                raise AddressRefused(host, f"{shown} is {why}: outbound requests to identity providers "
                                     "may reach public addresses only, unless an administrator "
                                     "allows the network (PROPYLON_OUTBOUND_ALLOWED_NETWORKS)")
            if text not in addresses:
                addresses.append(text)
        if not addresses:
            raise AddressRefused(host, f"{host} does not resolve")
        return addresses

    def transport(self) -> GuardedTransport:
        """An httpx transport whose connections go through this guard."""
        return GuardedTransport(self)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the guard accepted."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self._guard.resolve(host, port):
            # The socket goes to the checked address itself: nothing is resolved a second time.
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout,
                                                     local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # resolve() returns at least one address
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path, "outbound requests to identity providers use TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guard's network backend; no proxy, no environment settings."""

    def __init__(self, guard: OutboundGuard) -> None:
        super().__init__(trust_env=False)
        # httpx has no parameter for httpcore's network backend: replace the pool it built (not yet
        # used, no sockets) by one with the same defaults and the guarded backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_GuardedBackend(guard),
        )
