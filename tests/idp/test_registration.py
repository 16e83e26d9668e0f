"""The DCR engine against IdP answers the npm provider never gives: a 500, Gluu's 200 create with a
sparse body, answers without a client id or secret, Okta's API over the wire. A scripted HTTP server
on loopback answers; it records what the engine sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from propylon.idp.client_management import DeleteOutcome
from propylon.idp.protocol import ClientRequest, RegistrationError
from propylon.idp.registration import DcrClient, StoredClient
from tests.idp.conftest import LOOPBACK


@dataclass
class Scripted:
    """Answers each request with the next (status, body) of ``answers``."""

    answers: list[tuple[int, bytes]] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *lines = head.split("\r\n")
        method, target, _ = request_line.split(" ")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        length = int(headers.get("content-length", "0"))
        body = json.loads(await reader.readexactly(length)) if length else None
        self.seen.append((method, target, headers, body))
        status, payload = self.answers.pop(0)
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode() + payload)
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def idp() -> AsyncIterator[Scripted]:
    scripted = Scripted()
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    scripted.port = server.sockets[0].getsockname()[1]
    yield scripted
    server.close()
    await server.wait_closed()


def answer(status: int, **document: Any) -> tuple[int, bytes]:
    return status, json.dumps(document).encode()


CC = ClientRequest(client_name="orders-app")


@pytest.mark.parametrize("kind", ["generic", "keycloak"])
async def test_a_500_is_a_retriable_error(idp: Scripted, kind: str) -> None:
    idp.answers = [(500, b"<html>Internal Server Error</html>")]
    with pytest.raises(RegistrationError) as caught:
        await DcrClient(kind, f"{idp.base}/reg", "iat-value", guard=LOOPBACK).register(CC)
    assert (caught.value.error, caught.value.status, caught.value.retriable) == ("idp_error", 500, True)
    assert "iat-value" not in str(caught.value)


async def test_gluu_style_200_with_a_sparse_body_and_a_query_client_uri(idp: Scripted) -> None:
    idp.answers = [answer(200, client_id="inum-1", client_secret="s", client_secret_expires_at=1900000000,
                          registration_access_token="rat-1",
                          registration_client_uri=f"{idp.base}/register?client_id=inum-1"),
                   (204, b"")]
    dcr = DcrClient("gluu", f"{idp.base}/register", None, guard=LOOPBACK)
    registered = await dcr.register(CC)
    assert registered.client_secret_expires_at == 1900000000  # Gluu clients expire
    assert registered.stored == StoredClient("inum-1", f"{idp.base}/register?client_id=inum-1", "rat-1")
    assert registered.metadata == {"client_id": "inum-1", "client_secret_expires_at": 1900000000,
                                   "registration_client_uri": f"{idp.base}/register?client_id=inum-1"}
    method, target, headers, body = idp.seen[0]
    assert (method, target, headers.get("authorization")) == ("POST", "/register", None)
    assert body["access_token_as_jwt"] is True
    assert await dcr.delete(registered.stored) is DeleteOutcome.DELETED
    assert idp.seen[1][:2] == ("DELETE", "/register?client_id=inum-1")
    assert idp.seen[1][2]["authorization"] == "Bearer rat-1"


@pytest.mark.parametrize(("document", "reason"), [
    ({"client_secret": "s"}, "no client_id"),
    ({"client_id": "c1"}, "without a client_secret"),
])
async def test_answers_without_client_id_or_secret_are_refused(
    idp: Scripted, document: dict[str, Any], reason: str
) -> None:
    idp.answers = [answer(201, **document)]
    with pytest.raises(RegistrationError, match=reason) as caught:
        await DcrClient("generic", f"{idp.base}/reg", "iat", guard=LOOPBACK).register(CC)
    assert caught.value.error == "invalid_response"


async def test_okta_over_the_wire(idp: Scripted) -> None:
    clients = f"{idp.base}/oauth2/v1/clients"
    idp.answers = [
        answer(201, client_id="0oa1", client_secret="s", client_name="orders-app",
               application_type="service", grant_types=["client_credentials"]),
        answer(200, client_id="0oa1", client_name="orders-app", application_type="service",
               grant_types=["client_credentials"], client_id_issued_at=1, client_secret_expires_at=0),
        answer(200, client_id="0oa1", client_name="v2", application_type="service",
               grant_types=["client_credentials"]),
        answer(401, error="invalid_client", error_description="Invalid value for 'client_id' parameter."),
    ]
    dcr = DcrClient("okta", clients, "api-token", guard=LOOPBACK)
    registered = await dcr.register(CC)
    assert registered.stored == StoredClient("0oa1", f"{clients}/0oa1", None)

    async def never(_token: str) -> None:
        raise AssertionError("Okta has no registration access token to rotate")

    updated = await dcr.update(registered.stored, {"client_name": "v2"}, store_token=never)
    assert updated.metadata["client_name"] == "v2"
    assert await dcr.delete(registered.stored) is DeleteOutcome.ALREADY_GONE
    assert [(m, t) for m, t, _, _ in idp.seen] == [
        ("POST", "/oauth2/v1/clients"), ("GET", "/oauth2/v1/clients/0oa1"),
        ("PUT", "/oauth2/v1/clients/0oa1"), ("DELETE", "/oauth2/v1/clients/0oa1")]
    assert {h["authorization"] for _, _, h, _ in idp.seen} == {"SSWS api-token"}
    put_body = idp.seen[2][3]
    assert put_body == {"client_id": "0oa1", "client_name": "v2", "application_type": "service",
                        "grant_types": ["client_credentials"]}


async def test_curity_rotation_on_read_is_stored_before_the_update(idp: Scripted) -> None:
    uri = f"{idp.base}/reg/c1"
    idp.answers = [
        answer(200, client_id="c1", client_name="a", client_secret="s2", registration_access_token="rat-2"),
        answer(200, client_id="c1", client_name="b", client_secret="s3", registration_access_token="rat-3"),
    ]
    saved: list[str] = []

    async def store(token: str) -> None:
        saved.append(token)

    dcr = DcrClient("curity", f"{idp.base}/reg", "dcr-token", guard=LOOPBACK)
    updated = await dcr.update(StoredClient("c1", uri, "rat-1"), {"client_name": "b"}, store_token=store)
    assert saved == ["rat-2", "rat-3"]
    assert [h["authorization"] for _, _, h, _ in idp.seen] == ["Bearer rat-1", "Bearer rat-2"]
    assert updated.stored.registration_access_token == "rat-3"
    assert updated.client_secret == "s3"  # rotated by the IdP: shown to the developer once
    assert "client_secret" not in idp.seen[1][3]


async def test_a_client_without_a_configuration_endpoint_cannot_be_managed() -> None:
    dcr = DcrClient("generic", "http://127.0.0.1:9/reg", "iat", guard=LOOPBACK)
    with pytest.raises(RegistrationError) as caught:
        await dcr.delete(StoredClient("c1", None, None))
    assert caught.value.error == "not_manageable"
