"""JWT authentication and policy mapping through the whole gateway, against a real JWKS server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import StartGateway, analytics_lines, raw_exchange
from tests.support.idp import TestIdp

GENERIC_401 = {"error": "unauthorized", "message": "Missing or invalid access token"}


@pytest.fixture
def idp() -> Iterator[TestIdp]:
    with TestIdp() as server:
        yield server


def jwt_config(idp: TestIdp, echo_port: int, **auth: Any) -> dict[str, Any]:
    """Orders API bound to the test IdP; bronze reads items, gold does anything, silver lists."""
    return {
        "identity_providers": [{"id": "idp", "issuer": idp.issuer, "audience": "urn:api"}],
        "apis": [{
            "id": "orders",
            "listen_path": "/orders/",
            "upstream": f"http://127.0.0.1:{echo_port}/",
            "strip_listen_path": True,
            "auth": {
                "type": "jwt",
                "identity_provider": "idp",
                "identity_claim": "client_id",
                "scope_policies": {"orders:write": "gold"},
                "default_policies": ["bronze"],
                **auth,
            },
        }],
        "policies": [
            {"id": "bronze",
             "access_rights": {"orders": {"methods": ["GET"], "paths": ["/items", "/items/*"]}}},
            {"id": "silver", "access_rights": {"orders": {"methods": ["GET"], "paths": ["/list"]}}},
            {"id": "gold", "access_rights": {"*": {}}},
            {"id": "elsewhere", "access_rights": {}},
        ],
        "clients": [
            {"client_id": "known-gold", "policies": ["gold"], "developer_id": "dev-1"},
            {"client_id": "known-elsewhere", "policies": ["elsewhere"]},
        ],
        "revoked_clients": ["deleted-client"],
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_is_proxied_and_upstream_sees_the_token(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(jwt_config(idp, echo_port))
    token = idp.mint({"aud": "urn:api", "client_id": "c1", "sub": "c1"})
    response = await client.get(f"http://127.0.0.1:{gw.port}/orders/items/1", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["path"] == "/items/1"


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION", "aUthorizatioN"])
async def test_the_authorization_header_is_found_however_it_is_spelled(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, name: str
) -> None:
    # Common spellings are matched by comparison, others through lower-casing: both must find it.
    gw = await start_gateway(jwt_config(idp, echo_port))
    token = idp.mint({"aud": "urn:api", "client_id": "c1", "sub": "c1"})
    raw = await raw_exchange(gw.port, b"GET /orders/items/1 HTTP/1.1\r\nHost: x\r\n%b: Bearer %b\r\n"
                             b"Connection: close\r\n\r\n" % (name.encode(), token.encode()))
    assert raw.startswith(b"HTTP/1.1 200 ")


INVALID_TOKENS = {
    "missing": lambda idp: None,
    "not-bearer": lambda idp: "Basic dXNlcjpwYXNz",
    "garbage": lambda idp: "Bearer not.a.jwt",
    "expired": lambda idp: "Bearer " + idp.mint({"aud": "urn:api"}, ttl=-3600),
    "wrong-audience": lambda idp: "Bearer " + idp.mint({"aud": "urn:other"}),
    "wrong-issuer": lambda idp: "Bearer " + idp.mint({"aud": "urn:api", "iss": "http://evil"}),
    "no-exp": lambda idp: "Bearer " + idp.mint({"aud": "urn:api", "exp": None}),
    "alg-none": lambda idp: "Bearer " + idp.mint({"aud": "urn:api"}, alg="none"),
    "hs256-with-public-key": lambda idp: "Bearer " + idp.mint(
        {"aud": "urn:api"}, alg="HS256", sign_with=idp.public_pem()),
    "jku-header": lambda idp: "Bearer " + idp.mint(
        {"aud": "urn:api"}, headers={"jku": "http://127.0.0.1:1/jwks"}),
    "oversized": lambda idp: "Bearer " + idp.mint({"aud": "urn:api", "pad": "x" * 9000}),
    "tampered": lambda idp: "Bearer " + idp.mint({"aud": "urn:api"})[:-4] + "AAAA",
}


@pytest.mark.parametrize("case", sorted(INVALID_TOKENS))
async def test_every_invalid_token_gets_the_same_generic_401(
    case: str, idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(jwt_config(idp, echo_port))
    header = INVALID_TOKENS[case](idp)
    headers = {"Authorization": header} if header else {}
    response = await client.get(f"http://127.0.0.1:{gw.port}/orders/items", headers=headers)
    assert response.status_code == 401
    assert response.json() == GENERIC_401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


POLICY_CASES = [
    # (claims, method, path, expected status) — resolution order: client → pol → scope → default
    ({"client_id": "known-gold"}, "DELETE", "/anything", 200),
    ({"client_id": "known-gold", "pol": "bronze"}, "DELETE", "/anything", 200),
    ({"client_id": "stranger", "pol": "silver"}, "GET", "/list", 200),
    ({"client_id": "stranger", "pol": "silver"}, "GET", "/items", 403),
    ({"client_id": "stranger", "pol": "no-such-policy"}, "GET", "/items", 200),
    ({"client_id": "stranger", "scope": "openid orders:write"}, "POST", "/items", 200),
    ({"client_id": "stranger", "scope": ["orders:write"]}, "POST", "/items", 200),
    ({"client_id": "stranger"}, "GET", "/items/7", 200),
    ({"client_id": "stranger"}, "POST", "/items/7", 403),
    ({"client_id": "stranger"}, "GET", "/admin", 403),
    ({"client_id": "stranger"}, "GET", "/itemsx", 403),
    # A registered client's policies are authoritative: no falling through to the defaults.
    ({"client_id": "known-elsewhere"}, "GET", "/items", 403),
    ({"azp": "known-gold"}, "PUT", "/x", 200),  # Keycloak's client claim
    ({"cid": "known-gold"}, "PUT", "/x", 200),  # Okta's
]


@pytest.mark.parametrize(("claims", "method", "path", "status"), POLICY_CASES)
async def test_policy_resolution_and_access_rights(
    claims: dict[str, Any], method: str, path: str, status: int,
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient,
) -> None:
    gw = await start_gateway(jwt_config(idp, echo_port))
    token = idp.mint({"aud": "urn:api", **claims})
    url = f"http://127.0.0.1:{gw.port}/orders{path}"
    response = await client.request(method, url, headers=bearer(token))
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"] == "forbidden"


async def test_no_policy_at_all_is_403(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(jwt_config(idp, echo_port, default_policies=[]))
    token = idp.mint({"aud": "urn:api", "client_id": "stranger"})
    response = await client.get(f"http://127.0.0.1:{gw.port}/orders/items", headers=bearer(token))
    assert response.status_code == 403


async def test_deleted_client_token_is_refused_immediately_on_reload(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    config = jwt_config(idp, echo_port)
    gw = await start_gateway(config)
    token = idp.mint({"aud": "urn:api", "client_id": "known-gold"})
    url = f"http://127.0.0.1:{gw.port}/orders/items"
    assert (await client.get(url, headers=bearer(token))).status_code == 200
    from propylon.domain.config import parse_config

    config["revoked_clients"] = ["deleted-client", "known-gold"]
    await gw.apply(parse_config(config))
    response = await client.get(url, headers=bearer(token))
    assert response.status_code == 403
    revoked = idp.mint({"aud": "urn:api", "client_id": "deleted-client"})
    assert (await client.get(url, headers=bearer(revoked))).status_code == 403


async def test_rotated_signing_key_is_fetched_once_and_accepted(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(jwt_config(idp, echo_port))
    url = f"http://127.0.0.1:{gw.port}/orders/items"
    hits_before = idp.jwks_hits
    kid = idp.rotate()
    for n in range(5):
        token = idp.mint({"aud": "urn:api", "client_id": f"c{n}"}, kid=kid)
        assert (await client.get(url, headers=bearer(token))).status_code == 200
    assert idp.jwks_hits == hits_before + 1


async def test_keys_are_prefetched_at_load_and_survive_an_idp_outage(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(jwt_config(idp, echo_port))
    assert idp.jwks_hits == 1  # fetched before the first request
    idp.set_failing(500)
    token = idp.mint({"aud": "urn:api", "client_id": "c1"})
    response = await client.get(f"http://127.0.0.1:{gw.port}/orders/items", headers=bearer(token))
    assert response.status_code == 200


async def test_claims_of_other_idps_do_not_leak_between_apis(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    with TestIdp() as other:
        config = jwt_config(idp, echo_port)
        config["identity_providers"].append({"id": "other", "issuer": other.issuer})
        config["apis"].append({
            "id": "billing", "listen_path": "/billing/", "upstream": f"http://127.0.0.1:{echo_port}/",
            "auth": {"type": "jwt", "identity_provider": "other", "default_policies": ["gold"]},
        })
        gw = await start_gateway(config)
        token = idp.mint({"aud": "urn:api", "client_id": "known-gold"})
        base = f"http://127.0.0.1:{gw.port}"
        assert (await client.get(f"{base}/orders/items", headers=bearer(token))).status_code == 200
        assert (await client.get(f"{base}/billing/x", headers=bearer(token))).status_code == 401


async def test_every_analytics_field_describes_the_request(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    # The gateway builds the record positionally on its hot path: each field must land in its place.
    analytics = tmp_path / "analytics.jsonl"
    gw = await start_gateway(jwt_config(idp, echo_port), analytics_file=analytics)
    token = idp.mint({"aud": "urn:api", "client_id": "known-gold", "sub": "s"})
    before = time.time()
    proxied = await client.post(f"http://127.0.0.1:{gw.port}/orders/items/7?x=1",
                                headers=bearer(token), content=b"hello")
    refused = await client.get(f"http://127.0.0.1:{gw.port}/orders/items/8")
    after = time.time()
    assert (proxied.status_code, refused.status_code) == (200, 401)
    first, second = await analytics_lines(analytics, 2)
    assert before - 0.01 <= first["time"] <= second["time"] <= after + 0.01
    assert {k: v for k, v in first.items()
            if k not in ("time", "timestamp", "upstream_latency_ms", "total_latency_ms")} == {
        "api_id": "orders", "method": "POST", "path": "/orders/items/7", "status": 200,
        "identity": "known-gold", "client_id": "known-gold", "developer_id": "dev-1",
        "policy": "gold", "bytes_in": 5, "bytes_out": len(proxied.content), "error": None,
    }
    assert 0 <= first["upstream_latency_ms"] <= first["total_latency_ms"] < (after - before) * 1000
    assert first["timestamp"].endswith("Z")
    assert {k: v for k, v in second.items() if k not in ("time", "timestamp", "total_latency_ms")} == {
        "api_id": "orders", "method": "GET", "path": "/orders/items/8", "status": 401,
        "upstream_latency_ms": None, "identity": None, "client_id": None, "developer_id": None,
        "policy": None, "bytes_in": 0, "bytes_out": 0, "error": "missing_token",
    }
