"""Policy resolution for a verified token: order, fall-through, scopes, identity."""

from __future__ import annotations

from typing import Any

import pytest

from propylon.domain.config import Client, JwtAuth
from propylon.policy.resolve import Resolution, find_client_id, resolve

KNOWN = frozenset({"gold", "silver", "bronze", "read", "write", "default", "fallback"})
CLIENTS = {
    "app-1": Client(client_id="app-1", policies=("gold",), developer_id="dev-7"),
    "app-orphan": Client(client_id="app-orphan", policies=("deleted",), developer_id="dev-8"),
}


def auth(**overrides: Any) -> JwtAuth:
    fields: dict[str, Any] = {
        "identity_provider": "idp",
        "scope_policies": {"orders:read": "read", "orders:write": "write", "admin": "read"},
        "default_policies": ("default",),
    }
    fields.update(overrides)
    return JwtAuth(**fields)


CLIENT = {"client_id": "app-1"}
CLAIM = {"pol": "silver"}
SCOPE = {"scope": "orders:read"}


@pytest.mark.parametrize(
    ("claims", "source", "policy_ids"),
    [
        ({**CLIENT, **CLAIM, **SCOPE}, "client", ("gold",)),  # client beats claim
        ({**CLAIM, **SCOPE}, "claim", ("silver",)),  # claim beats scope
        ({"client_id": "unknown-app", **CLAIM}, "claim", ("silver",)),  # unknown client
        (SCOPE, "scope", ("read",)),  # scope beats default
        ({"sub": "u"}, "default", ("default",)),
        # a claim naming only unknown policies falls through
        ({"pol": "nope", **SCOPE}, "scope", ("read",)),
        ({"pol": ["nope", ""], "sub": "u"}, "default", ("default",)),
        # a known client whose policies are all gone falls through too
        ({"client_id": "app-orphan", **CLAIM}, "claim", ("silver",)),
        # unmapped scopes fall through
        ({"scope": "profile email"}, "default", ("default",)),
    ],
)
def test_resolution_order(
    claims: dict[str, object], source: str, policy_ids: tuple[str, ...]
) -> None:
    resolution = resolve(claims, auth(), CLIENTS, KNOWN)
    assert resolution is not None
    assert resolution.source == source
    assert resolution.policy_ids == policy_ids


def test_nothing_applies() -> None:
    assert resolve({"sub": "u"}, auth(default_policies=()), CLIENTS, KNOWN) is None
    assert resolve({"sub": "u"}, auth(default_policies=("gone",)), CLIENTS, KNOWN) is None


@pytest.mark.parametrize(
    ("value", "policy_ids"),
    [
        ("silver", ("silver",)),
        (["silver", "gold"], ("silver", "gold")),
        (["silver", "nope", "silver", 3, None], ("silver",)),  # unknown, repeats, non-strings
        ("silver gold", None),  # a string is one id, not a list
        (42, None),
        ({"silver": True}, None),
    ],
)
def test_policy_claim_shapes(value: object, policy_ids: tuple[str, ...] | None) -> None:
    resolution = resolve({"pol": value}, auth(default_policies=()), {}, KNOWN)
    if policy_ids is None:
        assert resolution is None
    else:
        assert resolution is not None
        assert resolution.source == "claim"
        assert resolution.policy_ids == policy_ids


def test_policy_claim_name_is_configurable_and_can_be_off() -> None:
    claims = {"policies": "silver", "pol": "gold"}
    resolution = resolve(claims, auth(policy_claim="policies"), {}, KNOWN)
    assert resolution is not None
    assert resolution.policy_ids == ("silver",)
    resolution = resolve(claims, auth(policy_claim=None), {}, KNOWN)
    assert resolution is not None
    assert resolution.source == "default"


@pytest.mark.parametrize(
    ("scope", "policy_ids"),
    [
        ("orders:read", ("read",)),
        ("orders:write orders:read", ("read", "write")),  # scope_policies order, not claim order
        (["orders:write", "orders:read"], ("read", "write")),
        ("  orders:write\torders:read  ", ("read", "write")),
        ("orders:read admin", ("read",)),  # two scopes, one policy: deduplicated
        (["orders:read admin"], None),  # a list item is one scope, not split
        ("orders", None),  # no prefix matching of scopes
        (["orders:read", 7], ("read",)),
    ],
)
def test_scope_shapes(scope: object, policy_ids: tuple[str, ...] | None) -> None:
    resolution = resolve({"scope": scope}, auth(default_policies=()), {}, KNOWN)
    if policy_ids is None:
        assert resolution is None
    else:
        assert resolution is not None
        assert resolution.source == "scope"
        assert resolution.policy_ids == policy_ids


def test_scope_claim_name_is_configurable() -> None:
    resolution = resolve({"scp": ["orders:write"]}, auth(scope_claim="scp"), {}, KNOWN)
    assert resolution is not None
    assert resolution.policy_ids == ("write",)


@pytest.mark.parametrize(
    ("claims", "identity_claim", "identity"),
    [
        ({"email": "a@example.com", "sub": "s", "client_id": "c"}, "email", "a@example.com"),
        ({"uid": 1234, "sub": "s"}, "uid", "1234"),
        ({"uid": True, "sub": "s"}, "uid", "s"),  # a boolean is no identity
        ({"uid": "", "sub": "s"}, "uid", "s"),
        ({"uid": ["x"], "sub": "s"}, "uid", "s"),
        ({"sub": "s", "client_id": "c"}, "email", "s"),
        ({"sub": 99}, "sub", "99"),
        ({"sub": "", "azp": "c"}, "sub", "c"),
        ({"azp": "c"}, "sub", "c"),
        ({}, "sub", "anonymous"),
        ({"sub": None, "client_id": ""}, "sub", "anonymous"),
    ],
)
def test_identity_fallback_chain(
    claims: dict[str, object], identity_claim: str, identity: str
) -> None:
    resolution = resolve(claims, auth(identity_claim=identity_claim), {}, KNOWN)
    assert resolution is not None
    assert resolution.identity == identity


def test_client_fields() -> None:
    known = resolve({"azp": "app-1", "sub": "s"}, auth(), CLIENTS, KNOWN)
    assert known == Resolution(
        policy_ids=("gold",), source="client", identity="s", client_id="app-1", developer_id="dev-7"
    )
    unknown = resolve({"azp": "stranger"}, auth(), CLIENTS, KNOWN)
    assert unknown is not None
    assert unknown.source == "default"
    assert unknown.client_id == "stranger"
    assert unknown.developer_id is None
    orphan = resolve({"client_id": "app-orphan"}, auth(), CLIENTS, KNOWN)
    assert orphan is not None
    assert orphan.source == "default"
    assert orphan.developer_id == "dev-8"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"client_id": "a", "azp": "b"}, "a"),
        ({"azp": "b", "cid": "c"}, "b"),
        ({"client_id": "", "azp": 5, "cid": "c"}, "c"),  # empty and non-strings are skipped
        ({"clientId": "d"}, "d"),
        ({"client": "x"}, None),
        ({}, None),
    ],
)
def test_find_client_id(claims: dict[str, object], expected: str | None) -> None:
    assert find_client_id(claims, ("client_id", "azp", "cid", "clientId")) == expected


def test_client_claims_order_is_configurable() -> None:
    assert find_client_id({"client_id": "a", "azp": "b"}, ("azp", "client_id")) == "b"
