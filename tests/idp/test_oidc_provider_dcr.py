"""The DCR engine against a real third-party OpenID provider: panva's oidc-provider from npm
(tests/support/oidc_provider), with a real Propylon gateway accepting the tokens it issues.

Register (RFC 7591, with the initial access token) → token (client_credentials, RFC 9068 JWT) →
call through the gateway → read / update (with and without registration access token rotation) /
delete (RFC 7592) → the token is refused. Then what goes wrong: a missing, wrong or expired initial
access token, refused redirect URIs, an issuer mismatch, and an IdP that is down, hangs or fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from propylon.dashboard.discovery import dry_run_registration
from propylon.domain.config import parse_config
from propylon.idp.client_management import DeleteOutcome
from propylon.idp.discovery import OutboundError, ProviderMetadata, discover
from propylon.idp.protocol import RegistrationError
from propylon.idp.registration import ClientRequest, DcrClient, RegisteredClient, StoredClient
from tests.gateway.conftest import StartGateway
from tests.idp.conftest import LOOPBACK
from tests.support.oidc_provider import OidcProvider, start_oidc_provider

pytestmark = pytest.mark.services


async def metadata_of(idp: OidcProvider) -> ProviderMetadata:
    return await discover(idp.discovery_url, idp.issuer, guard=LOOPBACK)


async def dcr_with(idp: OidcProvider, token: str | None, **options: Any) -> DcrClient:
    """The engine for ``idp`` (generic adapter) presenting ``token`` as the initial access token."""
    found = await metadata_of(idp)
    assert found.registration_endpoint is not None
    return DcrClient("generic", found.registration_endpoint, token, **{"guard": LOOPBACK, **options})


async def dcr_for(idp: OidcProvider, **options: Any) -> DcrClient:
    """The engine for ``idp`` with its (valid) initial access token."""
    return await dcr_with(idp, idp.initial_access_token, **options)


async def access_token(idp: OidcProvider, client_id: str, secret: str) -> httpx.Response:
    token_endpoint = (await metadata_of(idp)).token_endpoint
    assert token_endpoint is not None
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        return await http.post(token_endpoint, auth=(client_id, secret),
                               data={"grant_type": "client_credentials", "scope": "read"})


def gateway_config(idp: OidcProvider, jwks_uri: str, echo_port: int, client_id: str,
                   revoked: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "identity_providers": [{"id": "npm-idp", "issuer": idp.issuer, "jwks_uri": jwks_uri,
                                "audience": idp.resource}],
        "apis": [{
            "id": "orders", "listen_path": "/orders/", "upstream": f"http://127.0.0.1:{echo_port}/",
            "strip_listen_path": True,
            "auth": {"type": "jwt", "identity_provider": "npm-idp", "identity_claim": "client_id"},
        }],
        "policies": [{"id": "reader", "access_rights": {"orders": {"methods": ["GET"]}}}],
        "clients": [{"client_id": client_id, "policies": ["reader"]}],
        "revoked_clients": list(revoked),
    }


class TokenStore:
    """What the portal does with a rotated registration access token: keep the newest."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    async def __call__(self, token: str) -> None:
        self.saved.append(token)


async def register_cc(dcr: DcrClient, name: str = "orders-app") -> RegisteredClient:
    return await dcr.register(ClientRequest(client_name=name, grant_types=("client_credentials",)))


async def test_discovery_gives_what_the_engine_needs(rotating_idp: OidcProvider) -> None:
    found = await metadata_of(rotating_idp)
    assert found.issuer == rotating_idp.issuer
    assert found.registration_endpoint == f"{rotating_idp.issuer}/reg"
    assert found.token_endpoint == f"{rotating_idp.issuer}/token"
    assert found.jwks_uri == f"{rotating_idp.issuer}/jwks"
    assert found.unsupported(("client_credentials",), "client_secret_basic") == []
    assert found.unsupported(("urn:example:grant",), "tls_client_auth") == [
        "grant type 'urn:example:grant'", "token endpoint auth method 'tls_client_auth'"]
    with pytest.raises(OutboundError) as caught:
        await discover(rotating_idp.discovery_url, rotating_idp.issuer + "/", guard=LOOPBACK)
    assert caught.value.code == "issuer_mismatch"


async def test_register_token_gateway_update_rotate_delete(
    rotating_idp: OidcProvider, echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    idp = rotating_idp
    dcr = await dcr_for(idp)
    registered = await register_cc(dcr)
    assert registered.client_secret
    assert registered.client_secret_expires_at == 0
    assert registered.stored.registration_client_uri == f"{idp.issuer}/reg/{registered.client_id}"
    assert registered.stored.registration_access_token
    assert "client_secret" not in registered.metadata
    assert "registration_access_token" not in registered.metadata
    assert registered.metadata["grant_types"] == ["client_credentials"]

    # A client_credentials token: an RFC 9068 JWT for our resource, naming the client.
    answer = await access_token(idp, registered.client_id, registered.client_secret)
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["client_id"]) == (
        idp.issuer, idp.resource, registered.client_id)

    # The gateway verifies it against the IdP's JWKS and proxies.
    jwks_uri = (await metadata_of(idp)).jwks_uri
    assert jwks_uri is not None
    config = gateway_config(idp, jwks_uri, echo_port, registered.client_id)
    gateway = await start_gateway(config)
    url = f"http://127.0.0.1:{gateway.port}/orders/items/7"
    through = await client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert through.status_code == 200, through.text
    assert through.json()["path"] == "/items/7"
    assert (await client.post(url, headers={"Authorization": f"Bearer {token}"})).status_code == 403

    # RFC 7592 read, then update: the IdP rotates the registration access token on the update.
    store = TokenStore()
    first_token = registered.stored.registration_access_token
    read = await dcr.read(registered.stored, store_token=store)
    assert read.metadata["client_name"] == "orders-app"
    updated = await dcr.update(registered.stored, {"client_name": "orders-app v2",
                                                   "redirect_uris": ["https://app.example/cb"]},
                               store_token=store)
    assert updated.metadata["client_name"] == "orders-app v2"
    assert updated.metadata["redirect_uris"] == ["https://app.example/cb"]
    assert updated.metadata["grant_types"] == ["client_credentials"]
    assert store.saved == [updated.stored.registration_access_token]
    assert updated.stored.registration_access_token != first_token
    with pytest.raises(RegistrationError) as stale:
        await dcr.read(registered.stored)  # the rotated-away token
    assert (stale.value.status, stale.value.error) == (401, "invalid_token")
    assert first_token not in str(stale.value)
    assert (await dcr.read(updated.stored)).metadata["client_name"] == "orders-app v2"
    # The secret was not sent back, and the IdP kept it.
    assert updated.client_secret is None
    assert (await access_token(idp, registered.client_id, registered.client_secret)).status_code == 200

    # Delete: the IdP forgets the client, and the gateway refuses its token once it is revoked.
    assert await dcr.delete(updated.stored) is DeleteOutcome.DELETED
    with pytest.raises(RegistrationError) as gone:
        await dcr.read(updated.stored)
    assert gone.value.status == 401
    refused = await access_token(idp, registered.client_id, registered.client_secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    await gateway.apply(parse_config(gateway_config(idp, jwks_uri, echo_port, registered.client_id,
                                                    revoked=(registered.client_id,))))
    assert (await client.get(url, headers={"Authorization": f"Bearer {token}"})).status_code == 403


async def test_update_without_rotation_keeps_the_token(stable_idp: OidcProvider) -> None:
    dcr = await dcr_for(stable_idp)
    registered = await register_cc(dcr, "stable-app")
    store = TokenStore()
    current = (await dcr.read(registered.stored)).metadata
    once = await dcr.update(registered.stored, {"client_name": "stable-app 2"}, store_token=store,
                            current=current)
    twice = await dcr.update(once.stored, {"client_name": "stable-app 3"}, store_token=store)
    assert store.saved == []
    assert twice.stored == registered.stored
    assert (await dcr.read(registered.stored)).metadata["client_name"] == "stable-app 3"
    assert await dcr.delete(registered.stored) is DeleteOutcome.DELETED
    # oidc-provider answers 401 for a client it does not know (RFC 7592 §2.3 allows it): not "gone".
    with pytest.raises(RegistrationError) as again:
        await dcr.delete(registered.stored)
    assert again.value.status == 401


async def test_a_failed_token_store_fails_the_update(rotating_idp: OidcProvider) -> None:
    dcr = await dcr_for(rotating_idp)
    registered = await register_cc(dcr, "store-fails")

    async def broken(_token: str) -> None:
        raise OSError("database down")

    with pytest.raises(OSError, match="database down"):
        await dcr.update(registered.stored, {"client_name": "never reported"}, store_token=broken)


@pytest.mark.parametrize(("token", "status", "error"), [
    (None, 400, "invalid_request"),  # oidc-provider: "no access token provided"
    ("not-the-initial-access-token", 401, "invalid_token"),
])
async def test_missing_or_wrong_initial_access_token(
    stable_idp: OidcProvider, token: str | None, status: int, error: str
) -> None:
    dcr = await dcr_with(stable_idp, token)
    with pytest.raises(RegistrationError) as caught:
        await register_cc(dcr)
    assert (caught.value.status, caught.value.error) == (status, error)
    assert not caught.value.retriable
    if token is not None:
        assert caught.value.credential_refused
        assert token not in str(caught.value)


@pytest.mark.parametrize(("grant_types", "redirect_uris"), [
    (("authorization_code",), ("https://app.example/cb#fragment",)),
    (("authorization_code",), ("not a uri",)),
    (("authorization_code", "client_credentials"), ("https://app.example/cb", "javascript:alert(1)")),
])
async def test_invalid_redirect_uris_are_refused(
    stable_idp: OidcProvider, grant_types: tuple[str, ...], redirect_uris: tuple[str, ...]
) -> None:
    dcr = await dcr_for(stable_idp)
    with pytest.raises(RegistrationError) as caught:
        await dcr.register(ClientRequest(client_name="web-app", grant_types=grant_types,
                                         redirect_uris=redirect_uris))
    assert caught.value.status == 400
    assert caught.value.error in ("invalid_redirect_uri", "invalid_client_metadata")
    assert caught.value.redirect_uri_refused


async def test_web_client_with_redirect_uris_registers(stable_idp: OidcProvider) -> None:
    dcr = await dcr_for(stable_idp)
    registered = await dcr.register(ClientRequest(
        client_name="web-app", grant_types=("authorization_code", "client_credentials"),
        redirect_uris=("https://app.example/cb", "https://app.example/other")))
    assert registered.metadata["response_types"] == ["code"]
    assert registered.metadata["redirect_uris"] == ["https://app.example/cb", "https://app.example/other"]
    assert await dcr.delete(registered.stored) is DeleteOutcome.DELETED


async def test_dashboard_dry_run_against_the_real_idp(stable_idp: OidcProvider) -> None:
    endpoint = (await metadata_of(stable_idp)).registration_endpoint
    assert endpoint is not None
    passed = await dry_run_registration(endpoint, stable_idp.initial_access_token, "generic", LOOPBACK)
    assert passed.passed, passed.message
    refused = await dry_run_registration(endpoint, "wrong", "generic", LOOPBACK)
    assert (refused.passed, refused.message) == (False, "registration refused: HTTP 401 (invalid_token)")


@pytest.fixture
async def own_idp() -> AsyncIterator[OidcProvider]:
    """A provider of its own, for tests that expire its tokens, freeze it or stop it."""
    provider = start_oidc_provider(expiring_iat_ttl=2)
    yield provider
    provider.stop()


async def test_expired_initial_access_token_then_slow_then_down(own_idp: OidcProvider) -> None:
    started = time.monotonic()
    dcr = await dcr_with(own_idp, own_idp.expiring_initial_access_token)
    early = await register_cc(dcr, "in-time")  # still valid
    await asyncio.sleep(max(0.0, started + 2.5 - time.monotonic()))
    with pytest.raises(RegistrationError) as expired:
        await register_cc(dcr, "too-late")
    assert (expired.value.status, expired.value.error) == (401, "invalid_token")

    # Frozen (SIGSTOP): the connection is accepted by the kernel but nothing answers.
    slow = await dcr_for(own_idp, time_limit=0.5)
    os.kill(own_idp.process.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(RegistrationError) as timed_out:
            await register_cc(slow)
        assert time.monotonic() - began < 2.0
    finally:
        os.kill(own_idp.process.pid, signal.SIGCONT)
    assert timed_out.value.error == "timeout"
    assert timed_out.value.retriable

    # Down: refused at once, with a clear error, for registration, management and discovery.
    own_idp.stop()
    began = time.monotonic()
    with pytest.raises(RegistrationError) as down:
        await register_cc(slow)
    assert (down.value.error, down.value.status, down.value.retriable) == ("unreachable", None, True)
    assert own_idp.issuer in down.value.description
    with pytest.raises(RegistrationError) as down_delete:
        await slow.delete(StoredClient(early.client_id, early.stored.registration_client_uri,
                                       early.stored.registration_access_token))
    assert down_delete.value.error == "unreachable"
    with pytest.raises(OutboundError) as down_discovery:
        await metadata_of(own_idp)
    assert down_discovery.value.code == "idp_unreachable"
    assert time.monotonic() - began < 2.0
