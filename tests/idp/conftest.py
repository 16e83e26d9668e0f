"""Fixtures of the DCR engine tests: the real gateway fixtures of tests/gateway (reused, not copied)
and module-wide real ``oidc-provider`` processes (one start, about a second, per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from propylon.outbound.guard import OutboundGuard
from tests.gateway.conftest import client, echo_port, start_gateway
from tests.support.oidc_provider import OidcProvider, start_oidc_provider

__all__ = ["LOOPBACK", "client", "echo_port", "rotating_idp", "stable_idp", "start_gateway"]

LOOPBACK = OutboundGuard(["127.0.0.0/8"])
"""The SSRF guard allowing this host: every test IdP listens on loopback."""


@pytest.fixture(scope="module")
def rotating_idp() -> Iterator[OidcProvider]:
    """oidc-provider issuing a new registration access token on every update (as Keycloak)."""
    provider = start_oidc_provider(rotate_registration_access_token=True)
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def stable_idp() -> Iterator[OidcProvider]:
    """oidc-provider keeping registration access tokens (as Gluu)."""
    provider = start_oidc_provider(rotate_registration_access_token=False)
    yield provider
    provider.stop()
