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


def test_counter_keys_separate_kinds_apis_and_identities_and_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from propylon.gateway.steps import rate_limit

    rate_keys = rate_limit.CounterKeys("rate", "orders")
    keys = {
        rate_keys.key("alice"), rate_keys.key("bob"),
        rate_limit.CounterKeys("quota", "orders").key("alice"),
        rate_limit.CounterKeys("rate", "billing").key("alice"),
        # a separator inside an id must not make two different pairs collide
        rate_limit.CounterKeys("rate", "orders\x00alice").key(""),
    }
    assert len(keys) == 5
    assert rate_keys.key("alice") is rate_keys.key("alice")  # made once, hash kept
    many = rate_limit.CounterKeys("rate", "orders")
    for n in range(100_001):
        many.key(f"id-{n}")
    assert len(many._keys) <= 100_000


@pytest.mark.parametrize("legacy", [True, False])
def test_rate_limit_lines_match_the_reference_headers_on_every_call(legacy: bool) -> None:
    from propylon.gateway.steps.rate_limit import limit_headers, limit_lines, limit_template

    template = limit_template("rate", 5, 10.0, legacy=legacy)
    for _ in range(3):  # later rounds are served from the memo
        for remaining, reset_after in [(4, 2.0), (3, 4.0), (0, 9.5), (-1, 0.0), (4, 1.2)]:
            while True:
                second = int(time.time())
                lines = limit_lines(template, remaining, reset_after, legacy=legacy)
                expected = limit_headers("rate", 5, remaining, reset_after, 10.0, legacy=legacy)
                if int(time.time()) == second:
                    break
            assert lines == b"".join(b"%b: %b\r\n" % pair for pair in expected)


def test_prepared_rate_lines_follow_the_wall_clock_from_one_second_to_the_next() -> None:
    # The rate step keeps the lines it rendered last; the same counts a second later must still
    # say the later reset time.
    from propylon.domain.config import RateLimit
    from propylon.gateway.steps.rate_limit import _PreparedRate, limit_headers

    prepared = _PreparedRate(RateLimit(requests=5, per_seconds=10))
    seen: set[bytes] = set()
    deadline = time.monotonic() + 3
    while len(seen) < 2 and time.monotonic() < deadline:
        second = int(time.time())
        lines = prepared.lines(4, 2.0)
        expected = limit_headers("rate", 5, 4, 2.0, 10.0, legacy=True)
        if int(time.time()) == second:
            assert lines == b"".join(b"%b: %b\r\n" % pair for pair in expected)
            seen.add(lines)
        time.sleep(0.01)
    assert len(seen) == 2


def test_the_rate_step_decides_alike_on_the_in_process_store_and_through_the_interface() -> None:
    # The step calls the in-process store natively for plain fields; any other store goes through
    # CounterStore.rate_hit. Both must give the same headers and the same refusals.
    from propylon.domain.config import AccessRule, Policy, Quota, RateLimit
    from propylon.gateway.errors import TooManyRequests
    from propylon.gateway.exchange import Exchange
    from propylon.gateway.steps.rate_limit import RateLimitStep
    from propylon.policy.combine import combine_for_api
    from propylon.policy.quota import QuotaDecision
    from propylon.policy.rate import GcraLimit, RateDecision
    from propylon.storage.memory_counters import MemoryCounters

    class Delegating:
        """Another CounterStore: the same state, reached only through the interface."""

        def __init__(self) -> None:
            self.inner = MemoryCounters()
            self.calls = 0

        def rate_hit(self, key: str, limit: GcraLimit, now: float) -> RateDecision:
            self.calls += 1
            return self.inner.rate_hit(key, limit, now)

        def quota_hit(self, key: str, quota: Quota, now: float) -> QuotaDecision:
            raise AssertionError("no quota here")

        def clear(self) -> None:
            self.inner.clear()

    policy = combine_for_api(
        [Policy(id="p", rate=RateLimit(requests=3, per_seconds=10), access_rights={"api": AccessRule()})],
        "api",
    )
    times = [n * 0.5 for n in range(8)]

    def outcomes(step: RateLimitStep) -> list[object]:
        seen: list[object] = []
        for identity in ("alice", "alice", "bob", "alice", "alice", "bob", "bob", "bob"):
            exchange = Exchange(
                "GET", "/x", b"", [], version="1.1", keep_alive=True, client_ip="127.0.0.1",
                host=b"", authorization=b"", started=0.0,
            )
            exchange.identity = identity
            exchange.policy = policy
            try:
                step.run(exchange)
                seen.append(b"".join(exchange.response_headers).split(b"x-ratelimit-reset")[0])
            except TooManyRequests as refused:
                seen.append(("429", refused.reason))
        return seen

    ticks = iter(times)
    native = outcomes(RateLimitStep("api", MemoryCounters(), lambda: next(ticks)))
    other = Delegating()
    ticks = iter(times)
    through_interface = outcomes(RateLimitStep("api", other, lambda: next(ticks)))
    assert native == through_interface
    assert other.calls == len(times)
    assert ("429", "rate_limited") in native
