# mypy: disallow-subclassing-any=False
"""Registered clients as Authlib sees them, and the checks every registration and update passes.

:class:`ProviderClient` adapts a stored :class:`~propylon.provider.models.ClientRow` to Authlib's
``ClientMixin`` (secrets compared by digest, exact redirect URI match, scopes limited to the
registered ones). :class:`ClientMetadata` extends Authlib's RFC 7591 metadata claims with strict
types (a number where a list belongs is ``invalid_client_metadata``, not a crash), defaults that
fit the grant types, consistency rules and Propylon's ``pol`` field.
"""

from __future__ import annotations

import hmac
import re
from typing import Any, ClassVar
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin  # type: ignore[import-untyped]
from authlib.oauth2.rfc7591 import (  # type: ignore[import-untyped]
    InvalidClientMetadataError,
    InvalidRedirectURIError,
)
from authlib.oauth2.rfc7591.claims import ClientMetadataClaims  # type: ignore[import-untyped]

from propylon.provider.models import ClientRow
from propylon.provider.settings import is_loopback_host
from propylon.web.credentials import token_digest

GRANT_TYPES = ("authorization_code", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
POLICY_FIELD = "pol"
"""Client metadata naming the gateway policy its tokens carry (the ``pol`` claim)."""

_STRING_FIELDS = ("client_name", "client_uri", "logo_uri", "scope", "tos_uri", "policy_uri", "jwks_uri",
                  "software_id", "software_version", "token_endpoint_auth_method", POLICY_FIELD)
_LIST_FIELDS = ("redirect_uris", "grant_types", "response_types", "contacts")
_MAX_STRING = 2000
_MAX_ITEMS = 20
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


class ProviderUser:
    """A signed-in user, as Authlib's grants expect (``get_user_id``)."""

    def __init__(self, user_id: str, username: str) -> None:
        self.user_id = user_id
        self.username = username

    def get_user_id(self) -> str:
        """The ``sub`` of the user's tokens."""
        return self.user_id


class ProviderClient(ClientMixin):
    """A stored client, for Authlib."""

    def __init__(self, row: ClientRow) -> None:
        self.row = row
        self.metadata: dict[str, Any] = dict(row.client_metadata)

    @property
    def client_id(self) -> str:
        """The client's identifier."""
        return self.row.client_id

    @property
    def auth_method(self) -> str:
        """The registered token endpoint authentication method."""
        return str(self.metadata.get("token_endpoint_auth_method", "client_secret_basic"))

    @property
    def policy(self) -> str | None:
        """The ``pol`` metadata, if registered."""
        value = self.metadata.get(POLICY_FIELD)
        return value if isinstance(value, str) and value else None

    def get_client_id(self) -> str:
        """Authlib: the client id."""
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        """Authlib: the redirect URI when the request names none (only if exactly one is registered)."""
        uris = self.metadata.get("redirect_uris") or []
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """Authlib: the scope to grant. No scope asked: every registered scope. Otherwise every
        asked scope must be registered, else None (``invalid_scope``); a client that registered
        no scope gets none."""
        registered = str(self.metadata.get("scope") or "").split()
        if not scope:
            return " ".join(registered)
        asked = scope.split()
        if not set(asked) <= set(registered):
            return None
        return " ".join(dict.fromkeys(asked))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Authlib: exact string match with a registered redirect URI."""
        return redirect_uri in (self.metadata.get("redirect_uris") or [])

    def check_client_secret(self, client_secret: str) -> bool:
        """Authlib: the secret's digest matches the stored one (constant time)."""
        stored = self.row.secret_digest
        if stored is None or not isinstance(client_secret, str):
            return False
        return hmac.compare_digest(stored, token_digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Authlib: the token endpoint takes exactly the registered method; introspection and
        revocation take either secret method from a confidential client, and revocation also
        takes ``none`` from a public one (RFC 7009 §2.1)."""
        if endpoint == "token":
            return method == self.auth_method
        if self.row.secret_digest is not None:
            return method in SECRET_METHODS
        return endpoint == "revocation" and method == "none"

    def check_response_type(self, response_type: str) -> bool:
        """Authlib: the response type was registered."""
        return response_type in (self.metadata.get("response_types") or [])

    def check_grant_type(self, grant_type: str) -> bool:
        """Authlib: the grant type was registered."""
        return grant_type in (self.metadata.get("grant_types") or [])


def bad_metadata(description: str) -> InvalidClientMetadataError:
    """An ``invalid_client_metadata`` error (RFC 7591 §3.2.2)."""
    return InvalidClientMetadataError(description=printable(description))


def printable(text: str) -> str:
    """``text`` made fit for an ``error_description`` (at most 300 characters)."""
    # OAuth error descriptions allow %x20-21 / %x23-5B / %x5D-7E only (RFC 6749 §4.1.2.1).
    return "".join(ch if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\' else "?" for ch in text)[:300]


class ClientMetadata(ClientMetadataClaims):
    """RFC 7591 client metadata with strict types, defaults and the provider's rules.

    ``params`` carries the server metadata (Authlib passes it); the provider adds
    ``_https_redirects_only`` to it in production mode.
    """

    REGISTERED_CLAIMS: ClassVar[list[str]] = [*ClientMetadataClaims.REGISTERED_CLAIMS, POLICY_FIELD]

    def validate(self, now: Any = None, leeway: int = 0) -> None:
        """Types, defaults and consistency first, then Authlib's RFC 7591 checks."""
        for name in [key for key, value in self.items() if value is None]:
            del self[name]
        for name in _STRING_FIELDS:
            if name in self:
                value = self[name]
                if not isinstance(value, str) or len(value) > _MAX_STRING:
                    raise bad_metadata(f"{name} must be a string of at most {_MAX_STRING} characters")
        for name in _LIST_FIELDS:
            if name in self:
                value = self[name]
                if (not isinstance(value, list) or len(value) > _MAX_ITEMS
                        or not all(isinstance(item, str) and 0 < len(item) <= _MAX_STRING for item in value)):
                    raise bad_metadata(f"{name} must be a list of at most {_MAX_ITEMS} non-empty strings")
        if "jwks" in self and not isinstance(self["jwks"], dict):
            raise bad_metadata("jwks must be a JSON object")
        self._defaults_and_rules()
        super().validate(now, leeway)

    def _defaults_and_rules(self) -> None:
        grants = self.setdefault("grant_types", ["authorization_code"])
        if not grants or len(set(grants)) != len(grants):
            raise bad_metadata("grant_types must list each grant type once")
        unknown = [grant for grant in grants if grant not in GRANT_TYPES]
        if unknown:
            raise bad_metadata(f"unsupported grant type {unknown[0]!r} (supported: "
                               f"{', '.join(GRANT_TYPES)})")
        wanted = ["code"] if "authorization_code" in grants else []
        responses = self.setdefault("response_types", wanted)
        if sorted(set(responses)) != wanted:
            raise bad_metadata("response_types must be ['code'] with the authorization_code grant "
                               "and [] without it")
        method = self.setdefault("token_endpoint_auth_method", "client_secret_basic")
        if method not in AUTH_METHODS:
            raise bad_metadata(f"unsupported token_endpoint_auth_method {method!r} (supported: "
                               f"{', '.join(AUTH_METHODS)})")
        if method == "none" and "client_credentials" in grants:
            raise bad_metadata("the client_credentials grant needs a confidential client "
                               "(token_endpoint_auth_method client_secret_basic or client_secret_post)")
        uris = self.get("redirect_uris") or []
        if "authorization_code" in grants and not uris:
            raise InvalidRedirectURIError(description="the authorization_code grant needs redirect_uris")
        for uri in uris:
            self._check_redirect_uri(uri)
        scope = self.get("scope")
        if scope is not None and not all(_SCOPE_TOKEN.match(token) for token in scope.split()):
            raise bad_metadata("scope must be space-separated scope tokens (RFC 6749 section 3.3)")
        policy = self.get(POLICY_FIELD)
        if policy is not None and not policy.strip():
            raise bad_metadata("pol must not be blank")

    def _check_redirect_uri(self, uri: str) -> None:
        try:
            parts = urlsplit(uri)
            host = parts.hostname or ""
        except ValueError:
            raise InvalidRedirectURIError(description="a redirect URI is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidRedirectURIError(description="redirect URIs must be absolute http(s) URLs")
        if parts.fragment or "#" in uri:
            raise InvalidRedirectURIError(description="redirect URIs must not have a fragment")
        if parts.username is not None or parts.password is not None:
            raise InvalidRedirectURIError(description="redirect URIs must not carry credentials")
        if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in uri):
            raise InvalidRedirectURIError(description="redirect URIs must not contain spaces or "
                                                      "control characters")
        if (self.params.get("_https_redirects_only") and parts.scheme == "http"
                and not is_loopback_host(host)):
            raise InvalidRedirectURIError(description="redirect URIs must use https (plain http is "
                                                      "allowed on loopback only)")
