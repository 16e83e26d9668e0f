"""The SSRF guard: which addresses are refused and why, the allow-list, refusals before any byte is
sent (a real loopback server sees nothing), the connection pinned to the checked address, and an
IdP that names a configuration endpoint on another origin."""

from __future__ import annotations

import ipaddress

import pytest

from propylon.idp.client_management import read_client
from propylon.idp.outbound import OutboundFailure, send
from propylon.idp.protocol import ClientRequest, RegistrationError
from propylon.idp.registration import DcrClient
from propylon.outbound.guard import OutboundGuard, parse_networks
from tests.idp.conftest import LOOPBACK
from tests.idp.test_registration import Scripted, answer
from tests.idp.test_registration import idp as scripted_idp
from tests.support.registration_server import RegistrationServer
from tests.support.resolving_guard import ResolvingGuard

__all__ = ["scripted_idp"]

STRICT = OutboundGuard()


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.9", "a loopback address"),
    ("10.1.2.3", "a private address"),
    ("172.16.0.1", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a link-local address"),
    ("100.64.0.1", "a shared (CGNAT) address"),
    ("224.0.0.1", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),
    ("240.0.0.1", "a reserved address"),
    ("192.0.2.10", "a private address"),  # documentation range: not global either
    ("::1", "a loopback address"),
    ("fd00::1", "a private address"),
    ("fe80::1", "a link-local address"),
    ("fec0::1", "a site-local address"),
    ("ff02::1", "a multicast address"),
    ("::", "an unspecified address"),
    ("::ffff:127.0.0.1", "a loopback address (it carries 127.0.0.1)"),
    ("::ffff:10.0.0.1", "a private address (it carries 10.0.0.1)"),
    ("2002:a9fe:a9fe::", "a link-local address (it carries 169.254.169.254)"),
    ("64:ff9b::a00:1", "a private address (it carries 10.0.0.1)"),
])
def test_non_public_addresses_are_refused_by_class(address: str, why: str) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "2002:0808:0808::"])
def test_public_addresses_pass(address: str) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_open_exactly_themselves() -> None:
    guard = OutboundGuard(["127.0.0.0/8", "fd12::/16"])
    assert guard.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert guard.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert guard.refusal(ipaddress.ip_address("fd12::5")) is None
    assert guard.refusal(ipaddress.ip_address("fd13::5")) == "a private address"
    assert guard.refusal(ipaddress.ip_address("10.0.0.1")) == "a private address"
    assert guard.refusal(ipaddress.ip_address("::1")) == "a loopback address"
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks(["10.0.0.0/33"])


async def test_a_refused_address_gets_no_connection() -> None:
    with RegistrationServer() as server:
        registered = server.add_client()
        for url in (f"{server.base_url}/register/{registered.client_id}",
                    f"http://localhost:{server.base_url.rsplit(':', 1)[1]}/register/x"):
            with pytest.raises(OutboundFailure) as caught:
                await send("GET", url, "the client configuration endpoint", max_bytes=1000)
            assert caught.value.reason == "refused"
            assert "loopback address" in caught.value.message
            assert "PROPYLON_OUTBOUND_ALLOWED_NETWORKS" in caught.value.message
        assert "localhost (127.0.0.1) is a loopback address" in caught.value.message or \
            "localhost (::1) is a loopback address" in caught.value.message
        assert server.requests == []
        # RFC 7592 calls say which class refused them, and are not worth retrying.
        with pytest.raises(RegistrationError) as refused:
            await read_client(registered.registration_client_uri, registered.access_token)
        assert refused.value.error == "address_refused"
        assert "127.0.0.1 is a loopback address" in refused.value.description
        assert not refused.value.retriable
        assert server.requests == []
        # Allowed, the same call goes through.
        config = await read_client(registered.registration_client_uri, registered.access_token,
                                   guard=LOOPBACK)
        assert config.metadata["client_id"] == registered.client_id
        assert len(server.requests) == 1


@pytest.mark.parametrize("url", ["http://10.0.0.1/reg", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:10.0.0.1]/reg", "http://100.64.0.1/reg",
                                 "http://[fd00::1]:8443/reg"])
async def test_private_targets_are_refused_before_connecting(url: str) -> None:
    # LOOPBACK allows this host only: the other private ranges stay refused (and nothing is sent
    # to them: the refusal comes before the connection).
    with pytest.raises(OutboundFailure) as caught:
        await send("POST", url, "the registration endpoint", max_bytes=1000, guard=LOOPBACK,
                   time_limit=2)
    assert caught.value.reason == "refused"
    assert " address" in caught.value.message


async def test_the_connection_goes_to_the_checked_address() -> None:
    # "idp.invalid" exists in no DNS: the request can only reach the server through the address
    # the guard checked, so the socket is pinned to it (nothing is looked up a second time).
    with RegistrationServer() as server:
        registered = server.add_client()
        port = server.base_url.rsplit(":", 1)[1]
        guard = ResolvingGuard("idp.invalid", "127.0.0.1")
        config = await read_client(f"http://idp.invalid:{port}/register/{registered.client_id}",
                                   registered.access_token, guard=guard)
        assert config.metadata["client_id"] == registered.client_id
        assert guard.lookups == 1
        rebound = ResolvingGuard("idp.invalid", "10.9.8.7")
        with pytest.raises(RegistrationError) as caught:
            await read_client(f"http://idp.invalid:{port}/register/{registered.client_id}",
                              registered.access_token, guard=rebound)
        assert "idp.invalid (10.9.8.7) is a private address" in caught.value.description
        assert len(server.requests) == 1


async def test_a_configuration_endpoint_on_another_origin_is_refused(scripted_idp: Scripted) -> None:
    idp = scripted_idp
    idp.answers = [answer(201, client_id="c1", client_secret="s", registration_access_token="rat",
                          registration_client_uri="http://127.0.0.2:9/reg/c1")]
    with pytest.raises(RegistrationError) as caught:
        await DcrClient("generic", f"{idp.base}/reg", "iat", guard=LOOPBACK).register(
            ClientRequest(client_name="a"))
    assert caught.value.error == "invalid_response"
    assert "another origin (http://127.0.0.2:9" in caught.value.description
    assert "'c1'" in caught.value.description
    # Same host, another port is another origin too; the same origin spelled differently is not.
    idp.answers = [answer(201, client_id="c2", client_secret="s", registration_access_token="rat",
                          registration_client_uri=f"http://127.0.0.1:{idp.port + 1}/reg/c2")]
    with pytest.raises(RegistrationError):
        await DcrClient("generic", f"{idp.base}/reg", "iat", guard=LOOPBACK).register(
            ClientRequest(client_name="a"))
    idp.answers = [answer(201, client_id="c3", client_secret="s", registration_access_token="rat",
                          registration_client_uri=f"HTTP://127.0.0.1:{idp.port}/reg/c3")]
    registered = await DcrClient("generic", f"{idp.base}/reg", "iat", guard=LOOPBACK).register(
        ClientRequest(client_name="a"))
    assert registered.stored.registration_client_uri == f"HTTP://127.0.0.1:{idp.port}/reg/c3"
