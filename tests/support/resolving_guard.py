"""An SSRF guard whose resolver knows one made-up name: a test DNS, not a mock of the connection.

The name exists in no real DNS, so a request to it can only reach a server through the address the
guard checked and returned: tests of pinning (no second lookup) and of names that resolve to
refused addresses use it, from the dashboard's IdP calls and the gateway's JWKS fetches alike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from propylon.outbound.guard import AddressRefused, OutboundGuard


class ResolvingGuard(OutboundGuard):
    """``name`` resolves to ``address`` (checked like any other); other hosts resolve as usual."""

    def __init__(self, name: str, address: str, allowed: Iterable[str] = ("127.0.0.0/8",)) -> None:
        super().__init__(allowed)
        self.name, self.address, self.lookups = name, address, 0

    async def resolve(self, host: str, port: int) -> list[str]:
        if host == self.name:
            self.lookups += 1
            why = self.refusal(ipaddress.ip_address(self.address))
            if why is not None:
                raise AddressRefused(host, f"{host} ({self.address}) is {why}")
            return [self.address]
        return await super().resolve(host, port)
