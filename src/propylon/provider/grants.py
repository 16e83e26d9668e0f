# mypy: disallow-subclassing-any=False
"""The grants the provider supports: client credentials, and authorization code with PKCE (S256).

Both are Authlib's grants with the storage hooks filled in and two tightenings: the scope granted
is limited to the client's registered scopes (also for client credentials, which Authlib leaves
open), and PKCE is required for every authorization code request, with ``S256`` only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    AuthorizationCodeGrant,
    AuthorizationCodeMixin,
    ClientCredentialsGrant,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7636 import CodeChallenge  # type: ignore[import-untyped]

from propylon.provider.clients import ProviderUser
from propylon.provider.models import AuthorizationCodeRow

if TYPE_CHECKING:
    from propylon.provider.server import ProviderServer


class ClientCredentials(ClientCredentialsGrant):
    """RFC 6749 §4.4, confidential clients only, scopes limited to the registered ones."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        """Authlib's checks, then the scope check."""
        super().validate_token_request()
        scope = self.request.client.get_allowed_scope(self.request.payload.scope)
        if scope is None:
            raise InvalidScopeError(description="the client did not register that scope")
        self.request.scope = scope

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """The token, for the scope resolved above (Authlib's would use the requested one)."""
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _StoredCode(AuthorizationCodeMixin):
    """An authorization code read back (already consumed) for Authlib."""

    def __init__(self, row: AuthorizationCodeRow) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


class AuthorizationCode(AuthorizationCodeGrant):
    """RFC 6749 §4.1; codes are stored by digest, single use, short-lived."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def _provider(self) -> ProviderServer:
        server: ProviderServer = self.server
        return server

    def save_authorization_code(self, code: str, request: Any) -> None:
        """Authlib: store the code with what the token request will be checked against."""
        data = request.payload.data
        self._provider.store.add_code(
            code,
            client_id=request.client.get_client_id(),
            user_id=request.user.get_user_id(),
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            code_challenge=data["code_challenge"],
            code_challenge_method=data.get("code_challenge_method", "S256"),
            expires_at=int(time.time()) + self._provider.settings.code_lifetime,
        )

    def query_authorization_code(self, code: str, client: Any) -> _StoredCode | None:
        """Authlib: the code, consumed at once (a second redemption finds nothing)."""
        if not isinstance(code, str) or len(code) > 512:
            return None
        row = self._provider.store.take_code(code, client.get_client_id())
        return None if row is None else _StoredCode(row)

    def delete_authorization_code(self, authorization_code: _StoredCode) -> None:
        """Authlib: nothing left to do (consumed when read)."""

    def authenticate_user(self, authorization_code: _StoredCode) -> ProviderUser | None:
        """Authlib: the user who signed in for the code."""
        row = self._provider.store.user(authorization_code.row.user_id)
        return None if row is None else ProviderUser(row.user_id, row.username)


class RequiredS256(CodeChallenge):
    """PKCE for every authorization request, ``S256`` only (RFC 7636, RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: Any) -> None:
        """Authlib's checks, after insisting on a challenge and on ``S256`` being named."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge and "
                                      "code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)
