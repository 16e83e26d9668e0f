"""The documentation stays true to the code: every setting and config field is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from propylon.domain import config
from propylon.settings import DashboardSettings, GatewaySettings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_gateway_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    start = text.index("## Gateway settings")
    section = text[start:text.index("\n## ", start + 1)]
    missing = [n for n in GatewaySettings.model_fields if f"`PROPYLON_{n.upper()}`" not in section]
    assert not missing


def test_every_dashboard_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    section = text[text.index("## Dashboard settings"):]
    missing = [n for n in DashboardSettings.model_fields if f"`PROPYLON_{n.upper()}`" not in section]
    assert not missing


def test_every_config_field_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    models: list[type[BaseModel]] = [
        config.IdentityProvider, config.JwtAuth, config.KeylessAuth, config.Api, config.RateLimit,
        config.Quota, config.AccessRule, config.Policy, config.Client, config.GatewayConfig,
    ]
    missing = [
        f"{model.__name__}.{name}" for model in models for name in model.model_fields
        if re.search(rf"\b{name}\b", text) is None
    ]
    assert not missing


def test_every_setting_and_config_field_has_a_description() -> None:
    undocumented = [
        f"{model.__name__}.{n}" for model in (GatewaySettings, DashboardSettings)
        for n, f in model.model_fields.items() if not f.description
    ]
    assert not undocumented
