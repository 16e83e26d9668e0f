# mypy: disallow-subclassing-any=False
"""Authlib's authorization server, integrated with Starlette and the provider's storage.

:class:`ProviderServer` implements the framework hooks Authlib leaves open
(``create_oauth2_request``, ``create_json_request``, ``handle_response``, ``send_signal``,
``query_client``, ``save_token``) and registers the grants (``provider.grants``), the RFC 9068
token generator (``provider.tokens``) and four endpoints: RFC 7591 registration with an initial
access token, RFC 7592 client configuration with the registration access token, RFC 7662
introspection and RFC 7009 revocation.

Every ``*_response`` method here is blocking (storage, argon2, RSA) and is called from a worker
thread; :meth:`ProviderServer.respond` is the one place where an Authlib call becomes a response,
so that no input, however broken, ends as a 500.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Error  # type: ignore[import-untyped]
from authlib.oauth2.rfc6750 import InvalidTokenError  # type: ignore[import-untyped]
from authlib.oauth2.rfc7009 import RevocationEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7662 import IntrospectionEndpoint  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from propylon.provider.clients import (
    SECRET_METHODS,
    ClientMetadata,
    ProviderClient,
    bad_metadata,
    printable,
)
from propylon.provider.grants import AuthorizationCode, ClientCredentials, RequiredS256
from propylon.provider.http import FormRequest, JsonBodyRequest, ParsedRequest
from propylon.provider.keys import KeyFileError, KeyRing
from propylon.provider.models import ClientRow
from propylon.provider.settings import ProviderSettings
from propylon.provider.store import ProviderStore
from propylon.provider.tokens import AccessTokenGenerator, AccessTokenView, read_access_token
from propylon.web.credentials import token_digest

log = logging.getLogger(__name__)

RAT_PREFIX = "pidp_rat_"
READ_ONLY_FIELDS = ("registration_access_token", "registration_client_uri",
                    "client_secret_expires_at", "client_id_issued_at")
"""RFC 7592 §2.2: fields an update must not carry; the provider ignores them when it does."""
_JSON_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response that no cache keeps (every answer here may carry a credential)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**_JSON_HEADERS, **(headers or {})})


def oauth_error(status: int, error: str, description: str,
                headers: dict[str, str] | None = None) -> Response:
    """An OAuth-style error answer (RFC 6749 §5.2)."""
    return json_response(status, {"error": error, "error_description": description}, headers)


def _bearer(request: Any, what: str) -> str:
    """The bearer token of ``request``, or 401 ``invalid_token`` naming ``what`` is needed."""
    header = request.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        raise InvalidTokenError(description=f"this endpoint needs {what} (Authorization: Bearer ...)")
    return token


class _RegistrationCredential:
    """The registration access token a RFC 7592 request presented."""

    def __init__(self, token: str) -> None:
        self.token = token

    def check_client(self, client: ProviderClient) -> bool:
        return secrets.compare_digest(client.row.registration_token_digest, token_digest(self.token))


class Registration(ClientRegistrationEndpoint):
    """RFC 7591 registration, authorised by an initial access token."""

    def __init__(self, server: ProviderServer) -> None:
        super().__init__(server, claims_classes=[ClientMetadata])

    def authenticate_token(self, request: JsonBodyRequest) -> str:
        """Authlib: the initial access token, if it is known and not expired (else 401)."""
        token = _bearer(request, "an initial access token")
        state = self.server.store.initial_access_token_state(token)
        if state == "expired":
            raise InvalidTokenError(description="the initial access token has expired")
        if state != "valid":
            raise InvalidTokenError(description="the initial access token is not valid")
        return token

    def get_server_metadata(self) -> dict[str, Any]:
        """Authlib: what registrations are checked against."""
        return dict(self.server.claims_parameters())

    def generate_client_id(self, request: JsonBodyRequest) -> str:
        """Authlib: 144 random bits."""
        return secrets.token_urlsafe(18)

    def generate_client_secret(self, request: JsonBodyRequest) -> str:
        """Authlib: 256 random bits."""
        return secrets.token_urlsafe(32)

    def generate_client_info(self, request: JsonBodyRequest) -> dict[str, Any]:
        """Authlib's, without a secret for a public client (``none``)."""
        info: dict[str, Any] = super().generate_client_info(request)
        if request.payload.data.get("token_endpoint_auth_method") == "none":
            info.pop("client_secret", None)
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any],
                    request: JsonBodyRequest) -> ProviderClient:
        """Authlib: store the client with digests of its secret and registration access token."""
        public = client_metadata.get("token_endpoint_auth_method") == "none"
        if public != ("client_secret" not in client_info):
            raise bad_metadata("token_endpoint_auth_method does not match the client's credentials")
        registration_token = RAT_PREFIX + secrets.token_urlsafe(32)
        secret = client_info.get("client_secret")
        row = ClientRow(
            client_id=client_info["client_id"],
            secret_digest=None if secret is None else token_digest(secret),
            registration_token_digest=token_digest(registration_token),
            client_metadata=dict(client_metadata),
            issued_at=client_info["client_id_issued_at"],
        )
        self.server.store.add_client(row)
        request.registration_access_token = registration_token
        log.info("registered client %s (%s)", row.client_id,
                 ", ".join(client_metadata.get("grant_types", [])))
        return ProviderClient(row)

    def generate_client_registration_info(self, client: ProviderClient,
                                          request: JsonBodyRequest) -> dict[str, str]:
        """Authlib: where and with what the client is managed (RFC 7592)."""
        return {"registration_client_uri": self.server.client_uri(client.client_id),
                "registration_access_token": request.registration_access_token}


class Configuration(ClientConfigurationEndpoint):
    """RFC 7592 read, update and delete, authorised by the client's registration access token."""

    def __init__(self, server: ProviderServer) -> None:
        super().__init__(server, claims_classes=[ClientMetadata])

    def authenticate_token(self, request: JsonBodyRequest) -> _RegistrationCredential:
        """Authlib: the presented registration access token (checked against the client below)."""
        return _RegistrationCredential(_bearer(request, "the registration access token"))

    def authenticate_client(self, request: JsonBodyRequest) -> ProviderClient:
        """Authlib: the client named in the path. An unknown client and a wrong token get the same
        401 (RFC 7592 §2: no telling which clients exist)."""
        client: ProviderClient | None = self.server.query_client(
            request.parsed.path_params.get("client_id", ""))
        if client is None or not request.credential.check_client(client):
            raise InvalidTokenError(description="the registration access token is not valid for "
                                                "this client")
        return client

    def revoke_access_token(self, *args: Any) -> None:
        """Authlib: nothing to revoke (the token's client does not exist)."""

    def check_permission(self, client: ProviderClient, request: JsonBodyRequest) -> bool:
        """Authlib: a client may always manage itself."""
        return True

    def introspect_client(self, client: ProviderClient) -> dict[str, Any]:
        """Authlib: the registration as stored (the secret is not stored, so not returned)."""
        return {"client_id": client.client_id, "client_id_issued_at": client.row.issued_at,
                "client_secret_expires_at": 0, **client.metadata}

    def generate_client_registration_info(self, client: ProviderClient,
                                          request: JsonBodyRequest) -> dict[str, str]:
        """Authlib: the same endpoint and token (this provider does not rotate them)."""
        return {"registration_client_uri": self.server.client_uri(client.client_id),
                "registration_access_token": request.credential.token}

    def create_update_client_response(self, client: ProviderClient, request: JsonBodyRequest) -> Any:
        """Authlib's update, with the read-only fields ignored rather than refused."""
        for name in READ_ONLY_FIELDS:
            request.payload.data.pop(name, None)
        return super().create_update_client_response(client, request)

    def update_client(self, client: ProviderClient, client_metadata: dict[str, Any],
                      request: JsonBodyRequest) -> ProviderClient:
        """Authlib: replace the metadata; a client cannot switch between public and confidential."""
        was_public = client.row.secret_digest is None
        if (client_metadata.get("token_endpoint_auth_method") == "none") != was_public:
            raise bad_metadata("token_endpoint_auth_method cannot switch between a public client "
                               f"and a confidential one ({', '.join(SECRET_METHODS)})")
        row = self.server.store.update_client(client.client_id, dict(client_metadata))
        if row is None:
            raise InvalidTokenError(description="the client no longer exists")
        return ProviderClient(row)

    def delete_client(self, client: ProviderClient, request: JsonBodyRequest) -> None:
        """Authlib: delete it (its tokens then introspect as inactive)."""
        self.server.store.delete_client(client.client_id)
        log.info("deleted client %s", client.client_id)

    def get_server_metadata(self) -> dict[str, Any]:
        """Authlib: what updates are checked against."""
        return dict(self.server.claims_parameters())


class _OwnTokens:
    """What introspection and revocation share: finding a token of this provider."""

    server: ProviderServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessTokenView | None:
        """Authlib: a verified access token of this provider, or None."""
        claims = read_access_token(token_string, self.server.keys.verification_set(), self.server.issuer)
        return None if claims is None else AccessTokenView(claims, self.server.token_is_revoked)


class Introspection(_OwnTokens, IntrospectionEndpoint):
    """RFC 7662 for confidential clients; a client sees its own tokens only."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(SECRET_METHODS)

    def check_permission(self, token: AccessTokenView, client: ProviderClient, request: Any) -> bool:
        """Authlib: the token was issued to the asking client."""
        return token.check_client(client)

    def introspect_token(self, token: AccessTokenView) -> dict[str, Any]:
        """Authlib: the token's claims (RFC 7662 §2.2)."""
        return token.introspection()


class Revocation(_OwnTokens, RevocationEndpoint):
    """RFC 7009: a client revokes its own access tokens (by ``jti``, until they expire)."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*SECRET_METHODS, "none"]

    def revoke_token(self, token: AccessTokenView, request: Any) -> None:
        """Authlib: record the revocation."""
        self.server.store.revoke(token.jti, token.client_id, token.expires_at)
        log.info("revoked token %s of client %s", token.jti, token.client_id)


class ProviderServer(AuthorizationServer):
    """Authlib's ``AuthorizationServer`` for Starlette, over the provider's store and keys."""

    def __init__(self, settings: ProviderSettings, store: ProviderStore, keys: KeyRing,
                 issuer: str) -> None:
        super().__init__(scopes_supported=None)
        self.settings = settings
        self.store = store
        self.keys = keys
        self.issuer = issuer
        self.register_token_generator("default", AccessTokenGenerator(
            issuer=issuer, keys=keys, audience=settings.audience, lifetime=settings.token_lifetime,
            default_policy=settings.default_policy))
        self.register_grant(ClientCredentials)
        self.register_grant(AuthorizationCode, [RequiredS256(required=True)])
        self.register_endpoint(Registration(self))
        self.register_endpoint(Configuration(self))
        self.register_endpoint(Introspection(self))
        self.register_endpoint(Revocation(self))

    # -- Authlib's framework hooks ----------------------------------------------------------

    def query_client(self, client_id: Any) -> ProviderClient | None:
        """Authlib: the registered client, or None."""
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
            return None
        row = self.store.client(client_id)
        return None if row is None else ProviderClient(row)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Authlib: nothing to keep (JWT access tokens are self-contained; revocation is by jti)."""

    def create_oauth2_request(self, request: ParsedRequest | FormRequest) -> FormRequest:
        """Authlib: the form/query request (already read and checked by the async side)."""
        if isinstance(request, FormRequest):
            return request
        return FormRequest(request, allow_insecure=not self.settings.production)

    def create_json_request(self, request: ParsedRequest) -> JsonBodyRequest:
        """Authlib: the JSON request (already read and checked by the async side)."""
        return JsonBodyRequest(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        """Authlib: a Starlette response (JSON for a dict, else the body as is)."""
        header_map = dict(headers or [])
        if isinstance(body, dict):
            header_map.pop("Content-Type", None)
            return json_response(status, body, header_map)
        return Response(body or b"", status_code=status, headers=header_map)

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        """Authlib's error answer, with an ``error_description`` always present (some Authlib
        errors carry none, or build one only on demand)."""
        status, body, headers = error(self.get_error_uri(request, error))
        if isinstance(body, dict) and not body.get("error_description"):
            described = printable(str(error.get_error_description() or ""))
            body["error_description"] = described or f"the request was refused ({error.error})"
        return self.handle_response(status, body, headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib: signals are logged at debug level."""
        log.debug("authlib signal %s", name)

    # -- the provider's own -----------------------------------------------------------------

    def client_uri(self, client_id: str) -> str:
        """The client's configuration endpoint (RFC 7592)."""
        return f"{self.issuer}/register/{client_id}"

    def claims_parameters(self) -> dict[str, Any]:
        """Server metadata handed to the client metadata checks (with the production rule)."""
        return {**metadata_document(self.issuer, self.keys.alg),
                "_https_redirects_only": self.settings.production}

    def token_is_revoked(self, jti: str, client_id: str) -> bool:
        """Whether the token was revoked or its client deleted."""
        return self.store.is_revoked(jti) or self.store.client(client_id) is None

    def respond(self, action: Callable[[], Any], request: Any = None) -> Response:
        """Run one Authlib call; any failure becomes an OAuth-style 4xx (storage trouble 503)."""
        try:
            response = action()
        except OAuth2Error as error:
            response = self.handle_error_response(request, error)
        except (KeyFileError, SQLAlchemyError) as exc:
            log.error("cannot serve the request: %s", exc)
            return oauth_error(503, "temporarily_unavailable", "the provider cannot serve this now",
                               {"Retry-After": "5"})
        except (ValueError, TypeError, LookupError, AttributeError, UnicodeError) as exc:
            # Authlib is not written for hostile input everywhere (a quote in a parameter can
            # make it raise ValueError while it builds an error): such input is a bad request.
            log.warning("request refused after an unexpected %s in Authlib", type(exc).__name__,
                        exc_info=True)
            return oauth_error(400, "invalid_request", "the request could not be processed")
        if response is None:
            return oauth_error(400, "invalid_request", "the request could not be processed")
        assert isinstance(response, Response)
        return response


def metadata_document(issuer: str, alg: str) -> dict[str, Any]:
    """The discovery document (RFC 8414 / OpenID Connect Discovery members this provider serves)."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "registration_endpoint": f"{issuer}/register",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "token_endpoint_auth_methods_supported": [*SECRET_METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": list(SECRET_METHODS),
        "revocation_endpoint_auth_methods_supported": [*SECRET_METHODS, "none"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "access_token_signing_alg_values_supported": [alg],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "pol"],
    }

