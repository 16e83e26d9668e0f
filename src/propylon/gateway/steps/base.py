"""The base class of the steps of an API's request chain (see :mod:`propylon.gateway.chain`)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from propylon.gateway.exchange import Exchange


class ChainStep:
    """One step of a request chain: authentication, access rights, rate limit or quota.

    :meth:`run` runs a step for an exchange: it returns ``None`` when it finished synchronously,
    else an awaitable that finishes it (a JWKS refetch); it refuses a request by raising
    :class:`~propylon.gateway.errors.GatewayError`. A base class with a named method rather than
    any callable: compiled, the chain then calls each step's ``run`` through the class's method
    table, where calling an object goes through the generic call protocol and parses the
    arguments of every call (about 1,300 instructions per request for three steps).
    """

    __slots__ = ()

    def run(self, exchange: Exchange) -> Awaitable[None] | None:
        """Run the step for ``exchange``."""
        raise NotImplementedError
