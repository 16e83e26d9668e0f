"""What every dashboard request handler needs, built once at start-up and passed down.

``create_app`` stores a :class:`DashboardContext` on the FastAPI app; handlers get it with the
:func:`get_context` dependency. Nothing here is a module-level global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from fastapi import Request

from propylon.dashboard.nodes import NodeRegistry
from propylon.dashboard.notify import ConfigNotifier
from propylon.dashboard.throttle import LoginThrottle
from propylon.outbound.guard import OutboundGuard
from propylon.settings import DashboardSettings
from propylon.storage.secret_box import SecretBox
from propylon.storage.sql.database import Database


@dataclass
class DashboardContext:
    """Settings, database, encryption and the channels to the gateways."""

    settings: DashboardSettings
    database: Database
    secrets: SecretBox
    notifier: ConfigNotifier
    nodes: NodeRegistry
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    """Failed admin password logins, per username and client address (see ``throttle.py``)."""
    node_secret: str = ""
    """The secret gateways present on ``/system/*``; empty leaves those endpoints out."""

    @cached_property
    def outbound(self) -> OutboundGuard:
        """The SSRF guard of every request to an identity provider (``settings.
        outbound_allowed_networks`` allowed besides public addresses)."""
        return OutboundGuard(self.settings.outbound_allowed_networks)

    async def config_changed(self, version: int | None) -> None:
        """Tell the gateways that configuration ``version`` is in the database (call after the
        commit; ``None``, from a write that does not affect gateways, does nothing)."""
        if version is not None:
            await self.notifier.publish(version)


def get_context(request: Request) -> DashboardContext:
    """FastAPI dependency: the context of the app serving ``request``."""
    context: DashboardContext = request.app.state.context
    return context
