"""The pieces of ``propylon up`` fit: Propylon's DCR engine manages clients at the embedded IdP,
and the gateway accepts the IdP's tokens (JWKS from discovery, ``iss``/``aud`` checked, ``pol``
mapped to a policy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from propylon.demo.upstream import start_echo_upstream
from propylon.domain.config import parse_config
from propylon.gateway.service import GatewayService
from propylon.idp.client_management import DeleteOutcome
from propylon.idp.discovery import discover, discovery_url
from propylon.idp.protocol import ClientRequest, RegistrationError
from propylon.idp.registration import DcrClient
from propylon.outbound.guard import OutboundGuard
from propylon.settings import GatewaySettings
from tests.provider.conftest import RunningIdp

pytestmark = pytest.mark.slow

LOOPBACK = OutboundGuard(["127.0.0.0/8"])


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await start_echo_upstream("127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_dcr_engine_registers_reads_updates_and_deletes(idp: RunningIdp) -> None:
    found = await discover(discovery_url(idp.issuer), idp.issuer, guard=LOOPBACK)
    assert found.registration_endpoint == f"{idp.issuer}/register"
    assert found.unsupported(("client_credentials",), "client_secret_basic") == []
    dcr = DcrClient("generic", found.registration_endpoint, idp.iat(), guard=LOOPBACK)
    registered = await dcr.register(ClientRequest(client_name="portal app", scope="orders:read",
                                                  extra={"pol": "gold"}))
    assert registered.client_secret
    assert registered.stored.registration_client_uri == f"{idp.issuer}/register/{registered.client_id}"
    assert "client_secret" not in registered.metadata

    stored: list[str] = []

    async def store_token(token: str) -> None:
        stored.append(token)

    read = await dcr.read(registered.stored, store_token=store_token)
    assert read.metadata["client_name"] == "portal app"
    updated = await dcr.update(registered.stored, {"client_name": "renamed app"}, store_token=store_token)
    assert updated.metadata["client_name"] == "renamed app"
    assert updated.metadata["pol"] == "gold"  # the whole registration is sent back on update
    assert updated.client_secret is None
    assert stored == []  # this provider does not rotate registration access tokens
    assert (await dcr.read(registered.stored)).metadata["client_name"] == "renamed app"

    async with httpx.AsyncClient(trust_env=False) as http:
        token = await http.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials"},
                                auth=(registered.client_id, registered.client_secret or ""))
    assert token.status_code == 200

    assert await dcr.delete(registered.stored) is DeleteOutcome.DELETED
    with pytest.raises(RegistrationError) as gone:
        await dcr.read(registered.stored)
    assert gone.value.credential_refused

    refused = DcrClient("generic", found.registration_endpoint, "pidp_iat_wrong", guard=LOOPBACK)
    with pytest.raises(RegistrationError) as wrong:
        await refused.register(ClientRequest(client_name="x"))
    assert wrong.value.credential_refused
    assert wrong.value.error == "invalid_token"


async def test_gateway_accepts_the_embedded_idps_tokens(
    idp: RunningIdp, echo_port: int, tmp_path: Path
) -> None:
    config = parse_config({
        "identity_providers": [{"id": "embedded", "issuer": idp.issuer, "audience": "urn:propylon:api"}],
        "apis": [{"id": "orders", "listen_path": "/orders/", "upstream": f"http://127.0.0.1:{echo_port}/",
                  "strip_listen_path": True,
                  "auth": {"type": "jwt", "identity_provider": "embedded", "identity_claim": "client_id"}}],
        "policies": [{"id": "gold", "access_rights": {"orders": {}}}],
    })
    gateway = GatewayService(GatewaySettings(port=0, data_dir=tmp_path / "gw",
                                             outbound_allowed_networks=("127.0.0.0/8",)), config)
    await gateway.start()
    try:
        dcr = DcrClient("generic", f"{idp.issuer}/register", idp.iat(), guard=LOOPBACK)
        gold = await dcr.register(ClientRequest(client_name="gold app", extra={"pol": "gold"}))
        plain = await dcr.register(ClientRequest(client_name="no policy"))
        base = f"http://127.0.0.1:{gateway.port}/orders"
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:

            async def token_of(client_id: str, secret: str | None) -> str:
                answer = await http.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials"},
                                         auth=(client_id, secret or ""))
                assert answer.status_code == 200, answer.text
                value: str = answer.json()["access_token"]
                return value

            gold_token = await token_of(gold.client_id, gold.client_secret)
            ok = await http.post(f"{base}/items", headers={"Authorization": f"Bearer {gold_token}"})
            assert ok.status_code == 200, ok.text
            assert ok.json()["path"] == "/items"
            no_policy = await token_of(plain.client_id, plain.client_secret)
            forbidden = await http.get(f"{base}/items", headers={"Authorization": f"Bearer {no_policy}"})
            assert forbidden.status_code == 403
            tampered = gold_token[:-6] + ("AAAAAA" if not gold_token.endswith("AAAAAA") else "BBBBBB")
            refused = await http.get(f"{base}/items", headers={"Authorization": f"Bearer {tampered}"})
            assert refused.status_code == 401
    finally:
        await gateway.stop(grace=1.0)
