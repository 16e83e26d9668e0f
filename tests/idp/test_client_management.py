"""RFC 7592 read and delete against a real HTTP endpoint on loopback (tests/support/registration_server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from propylon.idp.client_management import (
    MAX_RESPONSE_BYTES,
    DeleteOutcome,
    RegistrationError,
    delete_client,
    public_metadata,
    read_client,
)
from tests.idp.conftest import LOOPBACK
from tests.support.registration_server import RegistrationServer


@pytest.fixture
def idp() -> Iterator[RegistrationServer]:
    with RegistrationServer() as server:
        yield server


async def test_read_sends_the_bearer_token_and_returns_the_metadata(idp: RegistrationServer) -> None:
    client = idp.add_client({"client_name": "shop", "redirect_uris": ["https://shop.example/cb"]})
    config = await read_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert config.metadata["client_id"] == client.client_id
    assert config.metadata["client_name"] == "shop"
    assert config.rotated_registration_access_token is None
    assert "client_secret" in config.metadata
    assert "client_secret" not in public_metadata(config.metadata)
    assert idp.requests[-1].authorization == f"Bearer {client.access_token}"
    assert idp.requests[-1].method == "GET"


async def test_read_reports_a_rotated_token(idp: RegistrationServer) -> None:
    client = idp.add_client()
    idp.rotate_on_read = True
    config = await read_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert config.rotated_registration_access_token == idp.token_of(client.client_id)
    assert config.rotated_registration_access_token != client.access_token
    assert "registration_access_token" not in public_metadata(config.metadata)


async def test_wrong_token_is_the_idps_error(idp: RegistrationServer) -> None:
    client = idp.add_client()
    with pytest.raises(RegistrationError) as caught:
        await read_client(client.registration_client_uri, "not-the-token", guard=LOOPBACK)
    assert (caught.value.error, caught.value.status) == ("invalid_token", 401)
    assert caught.value.description == "bad registration access token"
    assert not caught.value.retriable
    assert "not-the-token" not in str(caught.value)
    assert idp.has_client(client.client_id)


async def test_delete_removes_the_client_and_a_second_delete_finds_it_gone(idp: RegistrationServer) -> None:
    client = idp.add_client()
    outcome = await delete_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert outcome is DeleteOutcome.DELETED
    assert not idp.has_client(client.client_id)
    assert idp.requests[-1] == type(idp.requests[-1])(
        "DELETE", f"/register/{client.client_id}", f"Bearer {client.access_token}"
    )
    again = await delete_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert again is DeleteOutcome.ALREADY_GONE


async def test_401_for_an_unknown_client_is_not_taken_as_deleted(idp: RegistrationServer) -> None:
    client = idp.add_client()
    idp.forget(client.client_id)
    idp.unknown_status = 401
    with pytest.raises(RegistrationError) as caught:
        await delete_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert caught.value.status == 401


async def test_server_error_is_retriable(idp: RegistrationServer) -> None:
    client = idp.add_client()
    idp.fail_with = 500
    with pytest.raises(RegistrationError) as caught:
        await delete_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert (caught.value.error, caught.value.status, caught.value.retriable) == ("server_error", 500, True)
    assert idp.has_client(client.client_id)


async def test_idp_down_is_unreachable(idp: RegistrationServer) -> None:
    client = idp.add_client()
    idp.stop()
    with pytest.raises(RegistrationError) as caught:
        await delete_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert caught.value.error == "unreachable"
    assert caught.value.status is None
    assert caught.value.retriable
    idp.start()  # back on the same port, with its clients
    outcome = await delete_client(client.registration_client_uri, client.access_token, guard=LOOPBACK)
    assert outcome is DeleteOutcome.DELETED


async def test_slow_idp_times_out_within_the_deadline(idp: RegistrationServer) -> None:
    client = idp.add_client()
    idp.delay = 2.0
    started = time.monotonic()
    with pytest.raises(RegistrationError) as caught:
        await read_client(client.registration_client_uri, client.access_token, time_limit=0.2, guard=LOOPBACK)
    assert caught.value.error == "timeout"
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("uri", ["ftp://127.0.0.1/register/x", "/register/x", "http:///x",
                                 "http://user:pw@127.0.0.1/register/x", "http://[::1/x"])
async def test_bad_uris_are_refused_before_any_request(uri: str) -> None:
    with pytest.raises(RegistrationError) as caught:
        await read_client(uri, "token", guard=LOOPBACK)
    assert caught.value.error == "invalid_uri"


class _Odd(BaseHTTPRequestHandler):
    """Answers that a client-management call must not trust: redirects, huge or non-JSON bodies."""

    seen_authorization: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen_authorization.append(self.headers.get("Authorization"))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"x" * (MAX_RESPONSE_BYTES + 10) if self.path == "/huge" else b"<html>not json</html>"
        self.send_response(200)
        if self.path != "/huge-chunked":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/huge-chunked":
            body = b"y" * (MAX_RESPONSE_BYTES + 10)
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def odd_server() -> Iterator[str]:
    _Odd.seen_authorization = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("path", "error"), [
    ("/redirect", "idp_error"), ("/huge", "response_too_large"),
    ("/huge-chunked", "response_too_large"), ("/plain", "invalid_response"),
])
async def test_untrustworthy_answers_are_errors(odd_server: str, path: str, error: str) -> None:
    with pytest.raises(RegistrationError) as caught:
        await read_client(f"{odd_server}{path}", "token", guard=LOOPBACK)
    assert caught.value.error == error
    # The redirect was not followed: exactly one request carried the token.
    assert _Odd.seen_authorization == ["Bearer token"]
