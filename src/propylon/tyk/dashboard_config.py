"""Tyk Dashboard configuration files (``tyk_analytics.conf``, JSON): recognised, and the one setting
Propylon takes from them.

Of a Tyk Dashboard's own configuration only ``oauth_redirect_uri_separator`` has a counterpart: the
character(s) developers type between several redirect URIs in one portal field, which becomes the
portal settings' ``oauth_redirect_uri_separator``. Every other setting (database, Redis, secrets,
listen port, e-mail, UI...) is reported as skipped by name; values are never echoed, because this
file holds ``admin_secret``, ``shared_node_secret``, ``mongo_url`` credentials and the like.

A separator is accepted when it is 1 to 4 printable ASCII characters, none of them whitespace, a
letter or digit, or one of ``: / ? # [ ] @ . - _ ~ % & = +`` — characters that structure every URL
or are common in a redirect URI's query, so splitting on them would cut one URI into pieces. That
leaves ``; , | ! $ ' ( ) * ^ { } < > \\ " ` `` (Tyk's default is ``;``, Propylon's ``,``). An empty
or null separator means "do not split" in Tyk; Propylon always splits lines, so it keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from propylon.tyk.translate import ImportReport

SEPARATOR_KEY = "oauth_redirect_uri_separator"
_MAX_SEPARATOR = 4  # PortalSettings.oauth_redirect_uri_separator's limit
# In every URL (scheme, authority, path, query, fragment delimiters, unreserved punctuation,
# percent-encoding) or common in a redirect URI's query string.
_IN_URLS = frozenset(":/?#[]@.-_~%&=+")
# Keys only a Dashboard config has; one of them (or the separator) marks the file, unless it also
# has keys of the other Tyk documents (a gateway's tyk.conf has the separator too, for Tyk's own
# OAuth server, not for the portal).
_DASHBOARD_KEYS = frozenset({"tyk_api_config", "mongo_url", "admin_secret", "shared_node_secret",
                             "host_config", "email_backend", SEPARATOR_KEY})
_OTHER_TYK_KEYS = frozenset({"proxy", "api_id", "api_definition", "access_rights", "apis", "policies",
                             "app_path", "storage", "use_db_app_configs", "middleware_path"})


def is_dashboard_config(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is (a part of) a Tyk Dashboard configuration file."""
    if "tyk_api_config" in data:
        return True
    keys = set(data)
    return bool(keys & _DASHBOARD_KEYS) and not keys & _OTHER_TYK_KEYS


def without_secrets(data: Any) -> Any:
    """``data`` with every Dashboard configuration's values blanked except the separator, so that
    a client sends the setting names (for the report) and not the secrets beside them."""
    if isinstance(data, list):
        return [without_secrets(item) for item in data]
    if isinstance(data, Mapping) and is_dashboard_config(data):
        return {key: (value if key == SEPARATOR_KEY else None) for key, value in data.items()}
    return data


def separator_problem(value: object) -> str | None:
    """Why ``value`` cannot be the portal's redirect-URI separator, or ``None`` when it can."""
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= _MAX_SEPARATOR:
        return f"must be 1 to {_MAX_SEPARATOR} characters, not {len(value)}"
    if any(char.isspace() or not char.isascii() or not char.isprintable() for char in value):
        return "must be printable ASCII without spaces (a blank separator cannot be seen or typed reliably)"
    clashing = sorted({char for char in value if char.isalnum() or char in _IN_URLS})
    if clashing:
        return (f"{value!r} contains {' '.join(clashing)}, which appear inside URLs, so splitting "
                "on it would cut redirect URIs apart; use ; , or | for example")
    return None


@dataclass
class DashboardSettings:
    """What the Dashboard configurations give: portal-settings fields, and the problems that
    forbid importing them (``(location, message)``, the location naming the file and key)."""

    portal_settings: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


def dashboard_settings(
    configs: Iterable[tuple[str, Mapping[str, Any]]], report: ImportReport
) -> DashboardSettings:
    """Take the redirect-URI separator from Tyk Dashboard configurations (each with where it was
    found); report the other settings as skipped, by name only."""
    result = DashboardSettings()
    chosen: tuple[str, str] | None = None  # (where, separator)
    for where, config in configs:
        label = f"Tyk Dashboard configuration {where}"
        others = sorted(str(key) for key in config if key != SEPARATOR_KEY)
        if others:
            report.skip(label, "settings with no Propylon counterpart, not imported: " + ", ".join(others))
        if SEPARATOR_KEY not in config:
            continue
        value = config[SEPARATOR_KEY]
        location = f"{where}.{SEPARATOR_KEY}"
        if value is None or value == "":
            report.note(label, f"{SEPARATOR_KEY} is empty (Tyk then does not split redirect URIs); "
                               "the portal keeps its separator (one URI per line always works)")
            continue
        problem = separator_problem(value)
        if problem is not None:
            result.problems.append((location, problem))
        elif chosen is not None and chosen[1] != value:
            result.problems.append((location, f"{value!r} differs from {chosen[1]!r} in {chosen[0]}; "
                                              "import one Tyk Dashboard configuration"))
        else:
            chosen = (where, value)
    if chosen is not None and not result.problems:
        result.portal_settings[SEPARATOR_KEY] = chosen[1]
    return result
