"""Access rights: the combined policy must allow this method on this path of this API."""

from __future__ import annotations

from propylon.gateway.errors import Forbidden
from propylon.gateway.exchange import Exchange
from propylon.gateway.steps.base import ChainStep


class AccessRightsStep(ChainStep):
    """Refuse (403) a request that no applicable policy allows. Paths are relative to the
    listen path and already normalised, so what is checked is exactly what is forwarded."""

    __slots__ = ()

    def run(self, exchange: Exchange) -> None:
        policy = exchange.policy
        if policy is not None and not policy.access.allows(exchange.method, exchange.rel_path):
            raise Forbidden(reason="access_rights")
