"""Authentication steps: who is calling, and which combined policy applies to them.

``JwtAuthStep`` verifies the bearer token (fast path: the verifier's cache of verified tokens),
refuses tokens of deleted clients, resolves policies (client → claim → scopes → defaults) and
combines them for this API. The result is remembered for the life of the compiled configuration
under the raw ``Authorization`` value, with the token's validity window and the verifier's
:meth:`~propylon.gateway.tokens.TokenVerifier.epoch`: a repeat caller costs one dictionary lookup,
one comparison of the whole value and a time comparison, without parsing or decoding the
header. ``KeylessStep`` applies the API's static policies keyed by client address.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Final

from propylon.domain.config import ALL_APIS, Client, JwtAuth, Policy
from propylon.gateway.errors import Forbidden, Unauthorized
from propylon.gateway.exchange import Exchange
from propylon.gateway.steps.base import ChainStep
from propylon.gateway.tokens import TokenRejected, TokenVerifier
from propylon.policy.combine import EffectivePolicy, combine_for_api
from propylon.policy.resolve import find_client_id, resolve

log = logging.getLogger(__name__)

_MAX_CACHED: Final = 100_000
# Remembered values are found by their last bytes: the end of a JWS is its signature, which differs
# between any two tokens, and hashing 24 bytes instead of the whole value (hundreds of bytes, and a
# new bytes object per request, so its hash is never cached) saved ~2,700 instructions a request.
# A hit still compares the whole value, so two values sharing an ending only cost a miss.
_KEY_BYTES: Final = 24
_Resolved = tuple[str, str | None, str | None, EffectivePolicy]


class _Known:
    """What the step remembers of one ``Authorization`` value. A class rather than a tuple:
    compiled, each read is a field access instead of an index, a type check and an unboxing."""

    __slots__ = (
        "authorization", "claims", "client_id", "developer_id", "epoch", "identity", "policy",
        "valid_from", "valid_until",
    )

    def __init__(
        self, authorization: bytes, window: tuple[float, float], epoch: int, resolved: _Resolved,
        claims: dict[str, object],
    ) -> None:
        self.authorization = authorization
        self.valid_from, self.valid_until = window
        self.epoch = epoch
        self.identity, self.client_id, self.developer_id, self.policy = resolved
        self.claims = claims


class PolicyTable:
    """The policies of one configuration as seen from one API, with combinations memoised."""

    __slots__ = ("_cache", "api_id", "granting", "policies")

    def __init__(self, api_id: str, policies: Mapping[str, Policy]) -> None:
        self.api_id = api_id
        self.policies = policies
        self.granting = [
            p for p in policies.values() if api_id in p.access_rights or ALL_APIS in p.access_rights
        ]
        self._cache: dict[tuple[str, ...], EffectivePolicy | None] = {}

    def effective(self, policy_ids: tuple[str, ...]) -> EffectivePolicy | None:
        """The combination of ``policy_ids`` for this API; ``None`` when none grants it."""
        try:
            return self._cache[policy_ids]
        except KeyError:
            pass
        chosen = [self.policies[i] for i in policy_ids if i in self.policies]
        result = combine_for_api(chosen, self.api_id)
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[policy_ids] = result
        return result


def bearer_token(authorization: bytes) -> str:
    """Extract the token of an ``Authorization: Bearer`` header, or refuse with the generic 401."""
    if not authorization:
        raise Unauthorized("missing_token")
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        raise Unauthorized("not_bearer")
    token = token.strip()
    if not token:
        raise Unauthorized("missing_token")
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        raise Unauthorized("malformed") from None


class JwtAuthStep(ChainStep):
    """Verify the bearer JWT and attach identity, client, developer and policy to the exchange."""

    __slots__ = ("_auth", "_clients", "_clock", "_known", "_resolved", "_revoked", "_table", "_verifier")

    def __init__(
        self,
        auth: JwtAuth,
        verifier: TokenVerifier,
        table: PolicyTable,
        *,
        clients: Mapping[str, Client],
        revoked: frozenset[str],
    ) -> None:
        self._auth = auth
        self._verifier = verifier
        self._table = table
        self._clients = clients
        self._revoked = revoked
        self._resolved: dict[str, _Resolved] = {}
        self._known: dict[bytes, _Known] = {}
        self._clock = verifier.clock

    def run(self, exchange: Exchange) -> Awaitable[None] | None:
        authorization = exchange.authorization
        tail = authorization[-_KEY_BYTES:]
        known = self._known.get(tail)
        if known is not None and known.authorization == authorization:
            now = self._clock()
            if known.valid_from <= now < known.valid_until and known.epoch == self._verifier.epoch():
                exchange.identity = known.identity
                exchange.client_id = known.client_id
                exchange.developer_id = known.developer_id
                exchange.policy = known.policy
                exchange.claims = known.claims
                return None
            # Expired, or the keys changed: the full path decides (and refuses with a reason).
            del self._known[tail]
        token = bearer_token(authorization)
        try:
            claims = self._verifier.verify_now(token)
        except TokenRejected as exc:
            raise Unauthorized(exc.reason) from None
        if claims is None:
            return self._verify_slow(exchange, token)
        self._attach(exchange, token, claims)
        return None

    async def _verify_slow(self, exchange: Exchange, token: str) -> None:
        try:
            claims = await self._verifier.verify(token)
        except TokenRejected as exc:
            raise Unauthorized(exc.reason) from None
        self._attach(exchange, token, claims)

    def _attach(self, exchange: Exchange, token: str, claims: dict[str, object]) -> None:
        hit = self._resolved.get(token)
        if hit is None:
            hit = self._resolve(claims)
            if len(self._resolved) >= _MAX_CACHED:
                self._resolved.clear()
            self._resolved[token] = hit
        exchange.identity, exchange.client_id, exchange.developer_id, exchange.policy = hit
        exchange.claims = claims
        window = self._verifier.validity(token)
        if window is not None:
            known = self._known
            if len(known) >= _MAX_CACHED:
                known.clear()
            authorization = exchange.authorization
            known[authorization[-_KEY_BYTES:]] = _Known(
                authorization, window, self._verifier.epoch(), hit, claims
            )

    def _resolve(self, claims: Mapping[str, object]) -> _Resolved:
        client_id = find_client_id(claims, self._auth.client_claims)
        if client_id is not None and client_id in self._revoked:
            # Not cached: the answer is cheap and must never outlive a config change.
            raise Forbidden(reason="client_revoked")
        resolution = resolve(claims, self._auth, self._clients, self._table.policies)
        if resolution is None:
            raise Forbidden(reason="no_policy")
        effective = self._table.effective(resolution.policy_ids)
        if effective is None:
            raise Forbidden(reason="policy_does_not_grant_api")
        return resolution.identity, resolution.client_id, resolution.developer_id, effective


class KeylessStep(ChainStep):
    """No credentials: the caller is its address and the API's own policies apply."""

    __slots__ = ("_effective", "_has_policies")

    def __init__(self, table: PolicyTable, policy_ids: Sequence[str]) -> None:
        self._has_policies = bool(policy_ids)
        self._effective = table.effective(tuple(policy_ids)) if policy_ids else None

    def run(self, exchange: Exchange) -> None:
        exchange.identity = exchange.client_ip
        if self._has_policies:
            if self._effective is None:
                raise Forbidden(reason="policy_does_not_grant_api")
            exchange.policy = self._effective
