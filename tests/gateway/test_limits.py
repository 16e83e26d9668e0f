"""Rate limits and quotas: 429 with Retry-After and RateLimit headers, keyed per identity and API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import StartGateway
from tests.support.idp import TestIdp


@pytest.fixture
def idp() -> Iterator[TestIdp]:
    with TestIdp() as server:
        yield server


def limited_config(idp: TestIdp, echo_port: int, *, rate: Any = None, quota: Any = None) -> dict[str, Any]:
    def api(api_id: str) -> dict[str, Any]:
        return {
            "id": api_id, "listen_path": f"/{api_id}/", "upstream": f"http://127.0.0.1:{echo_port}/",
            "auth": {"type": "jwt", "identity_provider": "idp", "identity_claim": "client_id",
                     "default_policies": ["limited"]},
        }
    policy: dict[str, Any] = {"id": "limited", "access_rights": {"*": {}}}
    if rate:
        policy["rate"] = rate
    if quota:
        policy["quota"] = quota
    return {
        "identity_providers": [{"id": "idp", "issuer": idp.issuer}],
        "apis": [api("one"), api("two")],
        "policies": [policy],
    }


async def test_rate_limit_answers_429_with_headers_after_the_burst(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(limited_config(idp, echo_port, rate={"requests": 3, "per_seconds": 60}))
    url = f"http://127.0.0.1:{gw.port}/one/x"
    auth = {"Authorization": "Bearer " + idp.mint({"client_id": "c1"})}
    remaining = []
    for _ in range(3):
        ok = await client.get(url, headers=auth)
        assert ok.status_code == 200
        remaining.append(int(ok.headers["x-ratelimit-remaining"]))
        assert ok.headers["ratelimit-policy"] == '"rate";q=3;w=60'
    assert remaining == [2, 1, 0]
    refused = await client.get(url, headers=auth)
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    retry_after = int(refused.headers["retry-after"])
    assert 15 <= retry_after <= 20  # one request per 20 s is earned back
    assert refused.headers["x-ratelimit-limit"] == "3"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    assert refused.headers["ratelimit"].startswith('"rate";r=0;t=')


async def test_all_tokens_of_one_identity_share_the_limit_other_identities_do_not(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(limited_config(idp, echo_port, rate={"requests": 2, "per_seconds": 60}))
    url = f"http://127.0.0.1:{gw.port}/one/x"
    statuses = []
    for n in range(3):  # three different tokens, same client
        token = idp.mint({"client_id": "shared", "jti": str(n)})
        statuses.append((await client.get(url, headers={"Authorization": f"Bearer {token}"})).status_code)
    assert statuses == [200, 200, 429]
    other = idp.mint({"client_id": "someone-else"})
    assert (await client.get(url, headers={"Authorization": f"Bearer {other}"})).status_code == 200


async def test_limits_are_per_api(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway(limited_config(idp, echo_port, rate={"requests": 1, "per_seconds": 60}))
    auth = {"Authorization": "Bearer " + idp.mint({"client_id": "c1"})}
    base = f"http://127.0.0.1:{gw.port}"
    assert (await client.get(f"{base}/one/x", headers=auth)).status_code == 200
    assert (await client.get(f"{base}/one/x", headers=auth)).status_code == 429
    assert (await client.get(f"{base}/two/x", headers=auth)).status_code == 200


async def test_quota_exhaustion_is_429_with_retry_after_not_403(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    config = limited_config(idp, echo_port, quota={"max": 2, "renewal_seconds": 3600})
    gw = await start_gateway(config)
    url = f"http://127.0.0.1:{gw.port}/one/x"
    auth = {"Authorization": "Bearer " + idp.mint({"client_id": "c1"})}
    first = await client.get(url, headers=auth)
    assert first.headers["ratelimit-policy"] == '"quota";q=2;w=3600'
    assert first.headers["x-ratelimit-remaining"] == "1"
    assert (await client.get(url, headers=auth)).status_code == 200
    refused = await client.get(url, headers=auth)
    assert refused.status_code == 429
    assert refused.json()["error"] == "quota_exhausted"
    assert 3500 < int(refused.headers["retry-after"]) <= 3600
    assert refused.headers["x-ratelimit-remaining"] == "0"


async def test_keyless_limits_apply_per_client_address(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    config = {
        "apis": [{"id": "open", "listen_path": "/open/", "upstream": f"http://127.0.0.1:{echo_port}/",
                  "auth": {"type": "keyless", "policies": ["per-ip"]}}],
        "policies": [{"id": "per-ip", "rate": {"requests": 2, "per_seconds": 60},
                      "access_rights": {"open": {"methods": ["GET"]}}}],
    }
    gw = await start_gateway(config)
    url = f"http://127.0.0.1:{gw.port}/open/x"
    assert [(await client.get(url)).status_code for _ in range(3)] == [200, 200, 429]
    assert (await client.post(url)).status_code == 403  # access rights apply to keyless too
