# mypy: disallow-subclassing-any=False
"""RFC 9068 JWT access tokens: issuing them (Authlib's generator) and reading them back.

:class:`AccessTokenGenerator` is Authlib's ``JWTBearerTokenGenerator`` signing with the key ring's
active key (its ``kid`` in the header, ``typ: at+jwt``), with the configured audience and the
``pol`` claim. :func:`read_access_token` checks a token this provider issued (signature against
every published key, ``typ``, ``iss``) for introspection and revocation; :class:`AccessTokenView`
is what Authlib's endpoints see of it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin  # type: ignore[import-untyped]
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from propylon.provider.clients import ProviderClient
from propylon.provider.keys import KeyRing
from propylon.provider.settings import SIGNING_ALGORITHMS

MAX_TOKEN_CHARS = 8192
"""Longer strings are not tokens of this provider (not even decoded)."""


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """Authlib's RFC 9068 generator, bound to the key ring and the provider's claims."""

    def __init__(self, *, issuer: str, keys: KeyRing, audience: str, lifetime: int,
                 default_policy: str | None) -> None:
        super().__init__(issuer=issuer, alg=keys.alg, expires_generator=lifetime)
        self._keys = keys
        self._audience = audience
        self._default_policy = default_policy

    def get_jwks(self) -> KeySet:
        """Authlib: the key set to sign with (the active key only)."""
        return self._keys.signing_set()

    def get_audiences(self, client: ProviderClient, user: Any, scope: str | None) -> str:
        """Authlib: the configured resource (the gateway checks ``aud`` against it)."""
        return self._audience

    def get_jti(self, client: ProviderClient, grant_type: str, user: Any, scope: str | None) -> str:
        """Authlib: 192 random bits (revocation refers to tokens by ``jti``)."""
        return secrets.token_urlsafe(24)

    def get_extra_claims(self, client: ProviderClient, grant_type: str, user: Any,
                         scope: str | None) -> dict[str, Any]:
        """Authlib: ``pol`` from the client's metadata or the default policy setting."""
        policy = client.policy or self._default_policy
        return {"pol": policy} if policy else {}


def read_access_token(token: str, keys: KeySet, issuer: str) -> dict[str, Any] | None:
    """The claims of an access token this provider signed with a published key, or None (expiry
    is not checked here: introspection reports an expired token as inactive)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        decoded = jwt.decode(token, keys, algorithms=list(SIGNING_ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    claims = dict(decoded.claims)
    if decoded.header.get("typ") != "at+jwt" or claims.get("iss") != issuer:
        return None
    if not all(isinstance(claims.get(name), str) for name in ("jti", "client_id", "sub")):
        return None
    if not all(isinstance(claims.get(name), int) for name in ("exp", "iat")):
        return None
    return claims


class AccessTokenView(TokenMixin):
    """A verified access token, for Authlib's introspection and revocation endpoints."""

    def __init__(self, claims: dict[str, Any], is_revoked: Callable[[str, str], bool]) -> None:
        self.claims = claims
        self._is_revoked = is_revoked

    @property
    def jti(self) -> str:
        """The token's id."""
        return str(self.claims["jti"])

    @property
    def client_id(self) -> str:
        """The client the token was issued to."""
        return str(self.claims["client_id"])

    @property
    def expires_at(self) -> int:
        """``exp``."""
        return int(self.claims["exp"])

    def check_client(self, client: ProviderClient) -> bool:
        """Authlib: whether ``client`` is the one the token was issued to."""
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        """Authlib: the granted scope."""
        return str(self.claims.get("scope") or "")

    def get_expires_in(self) -> int:
        """Authlib: the lifetime the token was issued with."""
        return self.expires_at - int(self.claims["iat"])

    def is_expired(self) -> bool:
        """Authlib: ``exp`` has passed."""
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        """Authlib: revoked by ``jti``, or its client was deleted."""
        return self._is_revoked(self.jti, self.client_id)

    def introspection(self) -> dict[str, Any]:
        """The RFC 7662 §2.2 answer for an active token."""
        answer = {"active": True, "token_type": "Bearer"}
        for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "pol"):
            if name in self.claims:
                answer[name] = self.claims[name]
        return answer
