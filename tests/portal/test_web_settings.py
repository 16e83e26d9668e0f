"""The portal pages take their session and cookie settings from the dashboard's settings."""

from __future__ import annotations

import pytest

from propylon.portal.web.settings import PortalWebSettings
from propylon.settings import DashboardSettings


def test_the_portal_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPYLON_PORTAL_SESSION_IDLE_SECONDS", "600")
    monkeypatch.setenv("PROPYLON_PORTAL_SESSION_ABSOLUTE_SECONDS", "7200")
    monkeypatch.setenv("PROPYLON_PORTAL_SESSION_TOUCH_SECONDS", "0")
    monkeypatch.setenv("PROPYLON_PORTAL_COOKIE_SECURE", "true")
    web = PortalWebSettings.from_dashboard(DashboardSettings())
    assert (web.session_idle_seconds, web.session_absolute_seconds, web.session_touch_seconds,
            web.cookie_secure) == (600, 7200, 0, True)


def test_defaults_and_production() -> None:
    web = PortalWebSettings.from_dashboard(DashboardSettings())
    assert (web.session_idle_seconds, web.session_absolute_seconds, web.cookie_secure) == (1800, 43200, None)
    # Production always sends Secure cookies, even when told otherwise.
    assert PortalWebSettings.from_dashboard(
        DashboardSettings(production=True, portal_cookie_secure=False)).cookie_secure is True
    never = PortalWebSettings.from_dashboard(DashboardSettings(portal_cookie_secure=False))
    assert never.cookie_secure is False


def test_a_session_lifetime_below_a_minute_is_refused() -> None:
    with pytest.raises(ValueError, match="portal_session_idle_seconds"):
        DashboardSettings(portal_session_idle_seconds=5)
