"""The portal pages' own settings: session lifetimes and the cookie's ``Secure`` flag.

They belong in :class:`~propylon.settings.DashboardSettings` eventually (``PROPYLON_PORTAL_*``);
until then :meth:`PortalWebSettings.from_dashboard` derives them from it, with these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from propylon.settings import DashboardSettings


@dataclass(frozen=True, slots=True)
class PortalWebSettings:
    """How portal sessions live and how their cookie is sent."""

    session_idle_seconds: int = 30 * 60
    """A session not used for this long ends (the developer signs in again)."""

    session_absolute_seconds: int = 12 * 60 * 60
    """A session ends this long after sign-in, however busy it is."""

    session_touch_seconds: int = 60
    """A session's ``last_seen_at`` is written at most this often, so that page views are not all
    database writes; the idle lifetime is accurate to this much."""

    cookie_secure: bool | None = None
    """``Secure`` on the portal's cookies: ``None`` sets it when the request came over https;
    ``True`` always (production, where a TLS proxy in front may make requests look like http)."""

    def __post_init__(self) -> None:
        if min(self.session_idle_seconds, self.session_absolute_seconds) < 1 \
                or self.session_touch_seconds < 0:
            raise ValueError("session lifetimes must be positive")

    @classmethod
    def from_dashboard(cls, settings: DashboardSettings) -> PortalWebSettings:
        """The defaults, with ``Secure`` cookies always in production mode."""
        return cls(cookie_secure=True if settings.production else None)
