"""The DCR engine: register a client at an identity provider (RFC 7591) and manage it (RFC 7592).

:class:`DcrClient` binds one identity provider (its adapter, chosen by ``kind``, its registration
endpoint and its initial access token) and offers :meth:`~DcrClient.register`,
:meth:`~DcrClient.read`, :meth:`~DcrClient.update` and :meth:`~DcrClient.delete`. Registration
accepts what real IdPs answer: 201 or 200 (Gluu 4.x), a body with or without defaults filled in or
with metadata that differs from what was sent (Keycloak recomputes ``grant_types``): nothing is
compared for equality. What a caller must keep is :class:`RegisteredClient`'s
:attr:`~RegisteredClient.stored`: the client id, its configuration endpoint and its registration
access token (encrypted at rest; Okta has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from propylon.idp.adapters import IdpAdapter, adapter_for
from propylon.idp.client_management import (
    ClientConfiguration,
    DeleteOutcome,
    StoreToken,
    delete_client,
    read_client,
    rotate_secret,
    update_client,
)
from propylon.idp.outbound import DEFAULT_TIMEOUT
from propylon.idp.protocol import ClientRequest, RegistrationError, call, json_object, public_metadata
from propylon.outbound.guard import OutboundGuard

__all__ = ["ClientRequest", "DcrClient", "RegisteredClient", "RotatedSecret", "StoredClient"]


@dataclass(frozen=True)
class StoredClient:
    """What Propylon keeps to manage a registered client."""

    client_id: str
    registration_client_uri: str | None
    registration_access_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RegisteredClient:
    """The IdP's answer to a registration."""

    client_id: str
    client_secret: str | None = field(repr=False)
    """Shown to the developer once; Propylon never stores it."""
    client_secret_expires_at: int
    """0 for never (RFC 7591 §3.2.1); Gluu's DCR clients expire by default."""
    stored: StoredClient
    metadata: dict[str, Any]
    """The registration as the IdP returned it, without secrets."""


@dataclass(frozen=True)
class UpdatedClient:
    """The IdP's answer to an update."""

    metadata: dict[str, Any]
    """The registration as the IdP returned it, without secrets."""
    stored: StoredClient
    """With the registration access token to use from now on (already handed to ``store_token``)."""
    client_secret: str | None = field(default=None, repr=False)
    """A new client secret, when the IdP rotated it (Curity does on every call)."""


@dataclass(frozen=True)
class RotatedSecret:
    """The IdP's answer to an in-place secret rotation."""

    client_secret: str = field(repr=False)
    client_secret_expires_at: int
    stored: StoredClient
    """With the registration access token to use from now on (already handed to ``store_token``)."""
    metadata: dict[str, Any]
    """The registration as the IdP returned it, without secrets."""


class DcrClient:
    """Dynamic client registration at one identity provider."""

    def __init__(
        self,
        kind: str,
        registration_endpoint: str,
        initial_access_token: str | None,
        *,
        guard: OutboundGuard | None = None,
        time_limit: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.adapter: IdpAdapter = adapter_for(kind)
        self.registration_endpoint = registration_endpoint
        self._initial_access_token = initial_access_token
        self._guard = guard
        self._time_limit = time_limit
        self._transport = transport

    def __repr__(self) -> str:
        return f"DcrClient({self.adapter.kind!r}, {self.registration_endpoint!r})"

    async def register(self, request: ClientRequest) -> RegisteredClient:
        """Register ``request`` with the initial access token (RFC 7591 §3)."""
        adapter = self.adapter
        status, body = await call(
            "POST", self.registration_endpoint, "the registration endpoint",
            authorization=adapter.registration_authorization(self._initial_access_token),
            json_body=adapter.registration_metadata(request), time_limit=self._time_limit,
            guard=self._guard, transport=self._transport,
        )
        if status not in (200, 201):
            raise adapter.error(status, body)
        answer = json_object(status, body)
        client_id = answer.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise RegistrationError("invalid_response", "the IdP's answer has no client_id", status=status)
        secret = answer.get("client_secret")
        if request.token_endpoint_auth_method.startswith("client_secret_") and not (
            isinstance(secret, str) and secret
        ):
            raise RegistrationError("invalid_response", f"the IdP registered client {client_id!r} "
                                    "without a client_secret", status=status)
        token = answer.get("registration_access_token")
        expires = answer.get("client_secret_expires_at")
        client_uri = adapter.client_uri(self.registration_endpoint, client_id, answer)
        if client_uri is not None and _origin(client_uri) != _origin(self.registration_endpoint):
            # The registration access token would go there: another host the IdP names is not
            # trusted with it (nor is it reached past the SSRF guard's origin).
            raise RegistrationError("invalid_response", f"the IdP registered client {client_id!r} "
                                    f"but named a configuration endpoint on another origin "
                                    f"({_origin(client_uri)}, not {_origin(self.registration_endpoint)}): "
                                    "refused; delete the client at the IdP by hand", status=status)
        return RegisteredClient(
            client_id=client_id,
            client_secret=secret if isinstance(secret, str) else None,
            client_secret_expires_at=expires if isinstance(expires, int) else 0,
            stored=StoredClient(client_id, client_uri,
                                token if isinstance(token, str) and token else None),
            metadata=public_metadata(answer),
        )

    async def read(self, client: StoredClient, *, store_token: StoreToken | None = None
                   ) -> ClientConfiguration:
        """The client's registration (RFC 7592 read); a rotated token goes to ``store_token``."""
        return await read_client(self._uri(client), client.registration_access_token,
                                 **self._management(), store_token=store_token)

    async def update(self, client: StoredClient, changes: Mapping[str, Any], *,
                     store_token: StoreToken, current: Mapping[str, Any] | None = None) -> UpdatedClient:
        """Apply ``changes`` (e.g. ``redirect_uris``, ``client_name``) to the client (RFC 7592
        update). Without ``current`` the registration is read first (an update replaces every
        field). Every rotated registration access token is awaited in ``store_token`` before the
        next request and before this returns, so a failure to store it fails the update."""
        token = client.registration_access_token
        if current is None:
            latest: list[str] = []

            async def keep(new: str) -> None:
                await store_token(new)
                latest.append(new)

            current = (await self.read(client, store_token=keep)).metadata
            token = latest[-1] if latest else token
        config = await update_client(self._uri(client), token, current, changes,
                                     client_id=client.client_id, store_token=store_token,
                                     **self._management())
        token = config.rotated_registration_access_token or token
        previous = current.get("client_secret")
        new_secret = config.client_secret if config.client_secret != previous else None
        return UpdatedClient(public_metadata(config.metadata),
                             StoredClient(client.client_id, client.registration_client_uri, token),
                             new_secret)

    async def rotate_secret(self, client: StoredClient, *,
                            store_token: StoreToken) -> RotatedSecret | None:
        """A new secret for ``client``, in place (Okta's ``newSecret``, Curity's rotating read), or
        None when the IdP's adapter knows no way to rotate one (the caller then replaces the
        client: ``portal.rotation``). A rotated registration access token is awaited in
        ``store_token`` before this returns."""
        rotation = self.adapter.secret_rotation(self._uri(client))
        if rotation is None:
            return None
        config = await rotate_secret(rotation, client.registration_access_token, store_token=store_token,
                                     **self._management())
        assert config.client_secret is not None  # checked by rotate_secret
        expires = config.metadata.get("client_secret_expires_at")
        return RotatedSecret(
            client_secret=config.client_secret,
            client_secret_expires_at=expires if isinstance(expires, int) else 0,
            stored=StoredClient(client.client_id, client.registration_client_uri,
                                config.rotated_registration_access_token
                                or client.registration_access_token),
            metadata=public_metadata(config.metadata),
        )

    async def delete(self, client: StoredClient) -> DeleteOutcome:
        """Delete the client at the IdP (RFC 7592 delete)."""
        return await delete_client(self._uri(client), client.registration_access_token,
                                   **self._management())

    def _uri(self, client: StoredClient) -> str:
        if client.registration_client_uri is None:
            raise RegistrationError("not_manageable", f"the IdP gave no client configuration endpoint "
                                    f"for client {client.client_id!r}")
        return client.registration_client_uri

    def _management(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "initial_access_token": self._initial_access_token,
                "time_limit": self._time_limit, "guard": self._guard, "transport": self._transport}


def _origin(uri: str) -> str:
    """``scheme://host:port`` of ``uri`` (default ports spelled out), lower-case."""
    try:
        parts = urlsplit(uri)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
        host = (parts.hostname or "").lower()
    except ValueError:
        return uri
    return f"{parts.scheme.lower()}://{host}:{port}"
