"""Which policies apply to a verified token, and whose limits they are.

Order, first match wins (the Tyk Classic Portal's DCR flow, made explicit):

1. ``client``: the client id (first non-empty string among ``client_claims``) names a registered
   OAuth client → that client's policies;
2. ``claim``: the ``policy_claim`` (a string or a list of strings) → the ids it names;
3. ``scope``: each scope in ``scope_claim`` (space-separated string or list) that
   ``scope_policies`` maps → its policy, in ``scope_policies`` order;
4. ``default``: the API's ``default_policies``;
5. nothing → ``None`` (the caller answers 403).

Every returned id is one of ``known_policies``; a step whose ids are all unknown (a policy deleted
since the token was issued, a typo in a claim) falls through to the next step instead of
granting nothing. Ids are deduplicated, first occurrence kept.

Identity, the key of rate-limit and quota counters: the ``identity_claim`` when it holds a
non-empty string or an integer, else ``sub`` under the same rule, else the client id, else
``"anonymous"`` (so tokens carrying neither share one bucket rather than escaping limits).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from propylon.domain.config import Client, JwtAuth

Source = Literal["client", "claim", "scope", "default"]

ANONYMOUS = "anonymous"
"""The identity of a token that names neither a subject nor a client."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The policies for one token, where they came from, and who the caller is."""

    policy_ids: tuple[str, ...]
    source: Source
    identity: str
    client_id: str | None
    developer_id: str | None


def find_client_id(claims: Mapping[str, object], client_claims: Sequence[str]) -> str | None:
    """Return the first of ``client_claims`` whose value is a non-empty string, else ``None``."""
    for name in client_claims:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _identity_value(value: object) -> str | None:
    # bool is an int subclass, and `true` is no one's identity.
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _identity(claims: Mapping[str, object], claim: str, client_id: str | None) -> str:
    return (
        _identity_value(claims.get(claim))
        or _identity_value(claims.get("sub"))
        or client_id
        or ANONYMOUS
    )


def _known(ids: Iterable[object], known_policies: Container[str]) -> tuple[str, ...]:
    kept: dict[str, None] = {}
    for item in ids:
        if isinstance(item, str) and item in known_policies:
            kept[item] = None
    return tuple(kept)


def _strings(value: object) -> Iterable[object]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return value
    return ()


def _scopes(value: object) -> set[str]:
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list | tuple):
        return {item for item in value if isinstance(item, str)}
    return set()


def resolve(
    claims: Mapping[str, object],
    auth: JwtAuth,
    clients: Mapping[str, Client],
    known_policies: Container[str],
) -> Resolution | None:
    """Map verified ``claims`` to policies as the module describes; ``None`` when none apply.

    ``client_id`` is set whenever a client claim was present, even for an unknown client;
    ``developer_id`` whenever the client is known.
    """
    client_id = find_client_id(claims, auth.client_claims)
    identity = _identity(claims, auth.identity_claim, client_id)
    client = clients.get(client_id) if client_id is not None else None
    developer_id = client.developer_id if client is not None else None

    def found(ids: tuple[str, ...], source: Source) -> Resolution:
        return Resolution(ids, source, identity, client_id, developer_id)

    if client is not None:
        ids = _known(client.policies, known_policies)
        if ids:
            return found(ids, "client")
    if auth.policy_claim is not None:
        ids = _known(_strings(claims.get(auth.policy_claim)), known_policies)
        if ids:
            return found(ids, "claim")
    if auth.scope_policies:
        scopes = _scopes(claims.get(auth.scope_claim))
        if scopes:
            matched = (pol for scope, pol in auth.scope_policies.items() if scope in scopes)
            ids = _known(matched, known_policies)
            if ids:
                return found(ids, "scope")
    ids = _known(auth.default_policies, known_policies)
    if ids:
        return found(ids, "default")
    return None
