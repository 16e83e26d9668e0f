"""The portal pages' settings: session lifetimes and the cookie's ``Secure`` flag.

They come from :class:`~propylon.settings.DashboardSettings` (``PROPYLON_PORTAL_*``, documented
there); :meth:`PortalWebSettings.from_dashboard` takes them over, so the pages depend on this small
object rather than on every dashboard setting.
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
        """The portal settings of ``settings``; ``Secure`` cookies always in production mode."""
        secure = settings.portal_cookie_secure
        return cls(
            session_idle_seconds=settings.portal_session_idle_seconds,
            session_absolute_seconds=settings.portal_session_absolute_seconds,
            session_touch_seconds=settings.portal_session_touch_seconds,
            cookie_secure=True if settings.production else secure,
        )
