"""The gateway's JWKS and discovery fetches go through the SSRF guard (DESIGN §5), like the
dashboard's IdP calls: loopback and private addresses only when allowed
(``outbound_allowed_networks``); a refusal is a JWKS outage (logged, naming the address class;
the issuer's tokens get the generic 401; last good keys kept), never a crash."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from propylon.settings import DashboardSettings, GatewaySettings
from tests.gateway.conftest import StartGateway, keyless_api
from tests.gateway.test_jwt_auth import GENERIC_401, bearer
from tests.support.idp import TestIdp


@pytest.fixture
def idp() -> Iterator[TestIdp]:
    with TestIdp() as server:
        yield server


def _config(idp: TestIdp, echo_port: int, *, jwks_uri: str | None) -> dict[str, Any]:
    """A JWT API bound to ``idp`` (JWKS at ``jwks_uri``, or discovered) and a keyless one."""
    provider: dict[str, Any] = {"id": "idp", "issuer": idp.issuer, "audience": "urn:api"}
    if jwks_uri is not None:
        provider["jwks_uri"] = jwks_uri
    return {
        "identity_providers": [provider],
        "apis": [
            {"id": "orders", "listen_path": "/orders/", "upstream": f"http://127.0.0.1:{echo_port}/",
             "auth": {"type": "jwt", "identity_provider": "idp", "default_policies": ["all"]}},
            keyless_api(echo_port),
        ],
        "policies": [{"id": "all", "access_rights": {"orders": {}}}],
    }


def _token(idp: TestIdp) -> str:
    return idp.mint({"aud": "urn:api", "client_id": "c1", "sub": "c1"})


@pytest.mark.parametrize("discovered", [False, True], ids=["jwks_uri", "discovery"])
async def test_without_the_allow_list_a_loopback_jwks_is_not_fetched(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture, discovered: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="propylon.gateway.jwks")
    config = _config(idp, echo_port, jwks_uri=None if discovered else idp.jwks_uri)
    gw = await start_gateway(config, outbound_allowed_networks=())  # the production default
    base = f"http://127.0.0.1:{gw.port}"

    response = await client.get(f"{base}/orders/x", headers=bearer(_token(idp)))
    assert response.status_code == 401
    assert response.json() == GENERIC_401
    # Refused before any connection: the IdP saw nothing, not even the discovery request.
    assert (idp.jwks_hits, idp.discovery_hits) == (0, 0)
    refusals = [r.getMessage() for r in caplog.records if "was not fetched" in r.getMessage()]
    assert refusals, caplog.text
    assert "127.0.0.1 is a loopback address" in refusals[0]
    assert "PROPYLON_OUTBOUND_ALLOWED_NETWORKS" in refusals[0]
    assert all(r.levelno < logging.ERROR for r in caplog.records)  # an outage, not a bug
    # The gateway keeps serving: other APIs work, and the refused issuer keeps getting 401.
    assert (await client.get(f"{base}/echo/x")).status_code == 200
    assert (await client.get(f"{base}/orders/x", headers=bearer(_token(idp)))).status_code == 401


@pytest.mark.parametrize("discovered", [False, True], ids=["jwks_uri", "discovery"])
async def test_with_loopback_allowed_the_same_jwks_is_fetched(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient,
    discovered: bool,
) -> None:
    config = _config(idp, echo_port, jwks_uri=None if discovered else idp.jwks_uri)
    gw = await start_gateway(config, outbound_allowed_networks=("127.0.0.0/8",))
    response = await client.get(f"http://127.0.0.1:{gw.port}/orders/x", headers=bearer(_token(idp)))
    assert response.status_code == 200
    assert idp.jwks_hits >= 1
    assert idp.discovery_hits == (1 if discovered else 0)


@pytest.mark.parametrize(("host", "kind"), [
    ("10.255.255.1", "a private address"),
    ("169.254.169.254", "a link-local address"),  # cloud metadata services live here
    ("[::ffff:192.168.0.1]", "a private address (it carries 192.168.0.1)"),
    ("100.64.0.1", "a shared (CGNAT) address"),
])
async def test_a_jwks_uri_on_a_private_address_is_refused_even_with_loopback_allowed(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture, host: str, kind: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="propylon.gateway.jwks")
    config = _config(idp, echo_port, jwks_uri=f"http://{host}:8443/jwks")
    gw = await start_gateway(config)  # loopback allowed (the fixture's default), nothing else
    response = await client.get(f"http://127.0.0.1:{gw.port}/orders/x", headers=bearer(_token(idp)))
    assert response.status_code == 401
    assert response.json() == GENERIC_401
    assert f"is {kind}" in caplog.text
    assert "was not fetched" in caplog.text


async def test_a_host_name_is_judged_by_the_address_it_resolves_to(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # "localhost" resolves to loopback: allowing another private network does not let it through.
    caplog.set_level(logging.WARNING, logger="propylon.gateway.jwks")
    port = idp.issuer.rsplit(":", 1)[1]
    config = _config(idp, echo_port, jwks_uri=f"http://localhost:{port}/jwks")
    gw = await start_gateway(config, outbound_allowed_networks=("10.0.0.0/8",))
    response = await client.get(f"http://127.0.0.1:{gw.port}/orders/x", headers=bearer(_token(idp)))
    assert response.status_code == 401
    assert idp.jwks_hits == 0
    assert "localhost (127.0.0.1) is a loopback address" in caplog.text or \
        "localhost (::1) is a loopback address" in caplog.text


async def test_refused_refreshes_keep_the_last_good_keys(
    idp: TestIdp, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture, tmp_path: Any,
) -> None:
    # Keys fetched while loopback was allowed are persisted; a gateway restarted without the
    # allow-list cannot refresh them, but serves them (as in any IdP outage) instead of failing.
    caplog.set_level(logging.WARNING, logger="propylon.gateway.jwks")
    config = _config(idp, echo_port, jwks_uri=idp.jwks_uri)
    data_dir = tmp_path / "shared-data"
    first = await start_gateway(config, data_dir=data_dir)
    token = _token(idp)
    assert (await client.get(f"http://127.0.0.1:{first.port}/orders/x",
                             headers=bearer(token))).status_code == 200
    hits = idp.jwks_hits
    await first.stop(grace=1.0)

    second = await start_gateway(config, data_dir=data_dir, outbound_allowed_networks=())
    response = await client.get(f"http://127.0.0.1:{second.port}/orders/x", headers=bearer(token))
    assert response.status_code == 200
    assert idp.jwks_hits == hits
    assert "is a loopback address" in caplog.text
    assert "keeping the last good keys" in caplog.text


def test_gateway_and_dashboard_read_the_allow_list_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROPYLON_OUTBOUND_ALLOWED_NETWORKS", " 127.0.0.1/8, fd00::/8,,10.1.2.3")
    expected = ("127.0.0.0/8", "fd00::/8", "10.1.2.3/32")
    assert GatewaySettings().outbound_allowed_networks == expected
    assert DashboardSettings().outbound_allowed_networks == expected
    monkeypatch.setenv("PROPYLON_OUTBOUND_ALLOWED_NETWORKS", "10.0.0.0/8,intranet")
    for settings in (GatewaySettings, DashboardSettings):
        with pytest.raises(ValidationError, match="'intranet' is not an IP network"):
            settings()
    monkeypatch.delenv("PROPYLON_OUTBOUND_ALLOWED_NETWORKS")
    assert GatewaySettings().outbound_allowed_networks == ()  # public addresses only
