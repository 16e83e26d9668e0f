"""A Tyk Classic JWT API, imported, serves traffic: the migration path end to end."""

from __future__ import annotations

import base64

import httpx

from propylon.tyk.translate import translate
from tests.gateway.conftest import StartGateway
from tests.support.idp import TestIdp


async def test_an_imported_tyk_jwt_api_accepts_the_idps_tokens(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    with TestIdp() as idp:
        tyk_api = {
            "api_id": "orders", "name": "Orders", "enable_jwt": True, "jwt_signing_method": "rsa",
            "jwt_source": base64.b64encode(idp.jwks_uri.encode()).decode(),
            "jwt_identity_base_field": "sub", "jwt_policy_field_name": "pol",
            "jwt_default_policies": ["basic"],
            "proxy": {"listen_path": "/orders/", "target_url": f"http://127.0.0.1:{echo_port}/",
                      "strip_listen_path": True},
        }
        policies = [{"id": "basic", "rate": 2, "per": 60, "quota_max": -1,
                     "access_rights": {"orders": {"api_id": "orders", "versions": ["Default"]}}}]
        result = translate([tyk_api], policies, issuers={idp.jwks_uri: idp.issuer})
        gw = await start_gateway(result.config)
        url = f"http://127.0.0.1:{gw.port}/orders/items"
        auth = {"Authorization": "Bearer " + idp.mint({"sub": "alice"})}
        assert (await client.get(url, headers=auth)).json()["path"] == "/items"
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers=auth)).status_code == 200
        assert (await client.get(url, headers=auth)).status_code == 429  # Tyk's rate 2 per 60
