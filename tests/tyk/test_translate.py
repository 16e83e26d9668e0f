"""Translating Tyk Classic definitions: what maps, what is reported, what is refused."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from propylon.domain.config import parse_config
from propylon.tyk.files import read_tyk
from propylon.tyk.translate import translate

# Real Tyk Classic files, kept unchanged in the project's shared folder beside the checkout (CI
# lays it there too); PROPYLON_TYK_SAMPLES points elsewhere.
SAMPLES = Path(
    os.environ.get("PROPYLON_TYK_SAMPLES")
    or Path(__file__).resolve().parents[2].parent / "shared" / "tyk-samples"
)


@pytest.fixture(autouse=True)
def _samples_present() -> None:
    assert SAMPLES.is_dir(), f"Tyk samples not found at {SAMPLES} (set PROPYLON_TYK_SAMPLES)"
KEYCLOAK_JWKS = "https://sso.example.com/realms/acme/protocol/openid-connect/certs"


def jwt_api(**overrides: Any) -> dict[str, Any]:
    """A Tyk Classic JWT API definition with the fields Tyk's JWT docs describe."""
    api: dict[str, Any] = {
        "api_id": "orders-api",
        "name": "Orders",
        "use_keyless": False,
        "enable_jwt": True,
        "jwt_signing_method": "rsa",
        "jwt_source": base64.b64encode(KEYCLOAK_JWKS.encode()).decode(),
        "jwt_identity_base_field": "sub",
        "jwt_client_base_field": "azp",
        "jwt_policy_field_name": "pol",
        "jwt_default_policies": ["bronze"],
        "jwt_scope_claim_name": "scope",
        "jwt_scope_to_policy_mapping": {"orders:write": "gold"},
        "jwt_expires_at_validation_skew": 5,
        "jwt_not_before_validation_skew": 2,
        "proxy": {"listen_path": "/orders", "target_url": "http://orders:9000/", "strip_listen_path": True},
        "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}},
    }
    api.update(overrides)
    return api


POLICIES = [
    {"id": "bronze", "rate": 10, "per": 60, "quota_max": 1000, "quota_renewal_rate": 86400,
     "access_rights": {"orders-api": {"api_id": "orders-api", "versions": ["Default"]}}},
    {"id": "gold", "rate": 100, "per": 1, "quota_max": -1, "quota_renewal_rate": 3600,
     "access_rights": {"orders-api": {"api_id": "orders-api", "versions": ["Default"]}}},
]


def test_the_real_tyk_samples() -> None:
    docs = read_tyk(SAMPLES)
    assert len(docs.apis) == 2
    assert [p["id"] for p in docs.policies] == ["default"]
    result = translate(docs.apis, docs.policies)
    parse_config(result.config)
    (api,) = result.config["apis"]
    assert api["listen_path"] == "/quickstart/"
    assert api["upstream"] == "http://httpbin.org/"
    assert api["auth"] == {"type": "keyless"}
    (policy,) = result.config["policies"]
    assert policy["rate"] == {"requests": 1000, "per_seconds": 1.0}
    assert policy["quota"] == {"max": 100, "renewal_seconds": 60}
    report = "\n".join(result.report.skipped + result.report.notes)
    assert "API '1'" in report
    assert "auth tokens" in report
    assert "custom_middleware" in report
    assert "event_handlers" in report
    assert "'google'" in report


def test_a_jwt_api_maps_every_jwt_field() -> None:
    result = translate([jwt_api()], POLICIES)
    config = parse_config(result.config)
    (idp,) = config.identity_providers
    assert idp.issuer == "https://sso.example.com/realms/acme"
    assert idp.jwks_uri == KEYCLOAK_JWKS
    assert set(idp.algorithms) == {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    assert idp.leeway_seconds == 5
    (api,) = config.apis
    assert api.listen_path == "/orders/"
    auth = api.auth
    assert auth.type == "jwt"
    assert auth.identity_claim == "sub"
    assert auth.client_claims[0] == "azp"
    assert auth.policy_claim == "pol"
    assert auth.scope_policies == {"orders:write": "gold"}
    assert auth.default_policies == ("bronze",)
    gold = next(p for p in config.policies if p.id == "gold")
    assert gold.quota is None  # quota_max -1: unlimited
    assert gold.rate is not None
    assert gold.rate.requests == 100
    assert any("inferred from the Keycloak JWKS URL" in n for n in result.report.notes)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"jwt_signing_method": "hmac"}, "not allowed"),
        ({"jwt_source": base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nMIIB").decode()}, "not a JWKS URL"),
        ({"jwt_source": "https://idp.example.com/keys.json"}, "no issuer"),
        ({"proxy": {"target_url": "http://x/"}}, "listen_path"),
    ],
)
def test_what_cannot_be_expressed_is_skipped_with_the_reason(overrides: dict[str, Any], reason: str) -> None:
    result = translate([jwt_api(**overrides)], POLICIES)
    assert result.config["apis"] == []
    assert any(reason in line for line in result.report.skipped), result.report.skipped


def test_an_explicit_issuer_wins_over_inference() -> None:
    source = "https://idp.example.com/keys.json"
    result = translate([jwt_api(jwt_source=source)], POLICIES,
                       issuers={source: "https://idp.example.com"})
    assert result.config["identity_providers"][0]["issuer"] == "https://idp.example.com"


def test_regex_path_rules_are_not_guessed_into_access() -> None:
    policies = copy.deepcopy(POLICIES)
    policies[0]["access_rights"]["orders-api"]["allowed_urls"] = [{"url": "/items/.*", "methods": ["GET"]}]
    result = translate([jwt_api()], policies)
    bronze = next(p for p in result.config["policies"] if p["id"] == "bronze")
    assert bronze["access_rights"] == {}  # deny rather than widen
    assert any("allowed_urls" in n for n in result.report.notes)


def test_large_skew_is_clamped_and_reported() -> None:
    result = translate([jwt_api(jwt_issued_at_validation_skew=300)], POLICIES)
    assert result.config["identity_providers"][0]["leeway_seconds"] == 60
    assert any("reduced to 60s" in n for n in result.report.notes)


def test_the_same_input_gives_the_same_output() -> None:
    first = translate([jwt_api(), *read_tyk(SAMPLES).apis], POLICIES)
    second = translate([*read_tyk(SAMPLES).apis, jwt_api()], list(reversed(POLICIES)))
    assert json.dumps(first.config, sort_keys=True) == json.dumps(second.config, sort_keys=True)


def test_the_cli_writes_a_config_the_gateway_accepts(tmp_path: Path) -> None:
    (tmp_path / "orders.json").write_text(json.dumps(jwt_api()))
    (tmp_path / "policies.json").write_text(json.dumps({p["id"]: p for p in POLICIES}))
    out = tmp_path / "gateway.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "import-tyk", str(tmp_path), str(SAMPLES), "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "imported 2 APIs, 3 policies, 1 identity providers" in result.stderr
    assert "skipped: API '1'" in result.stderr
    check = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "check-config", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "OK (2 APIs, 3 policies, 1 identity providers)" in check.stdout


def test_the_cli_refuses_a_malformed_issuer_option(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "import-tyk", str(SAMPLES), "--issuer", "no-equals-sign"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "JWKS_URL=ISSUER" in result.stderr


def test_policy_name_and_key_expiry_are_kept_for_the_dashboard() -> None:
    policies = [
        {**POLICIES[0], "name": "  Bronze plan ", "key_expires_in": 3600},
        {**POLICIES[1], "key_expires_in": 0},  # Tyk: 0 means keys never expire
    ]
    result = translate([jwt_api()], policies)
    assert result.policy_extras == {
        "bronze": {"name": "Bronze plan", "key_expires_in_seconds": 3600},
        "gold": {},
    }
    assert any("key_expires_in" in note for note in result.report.notes)
    # The gateway's configuration itself has no place for them.
    assert "key_expires_in_seconds" not in result.config["policies"][0]
    parse_config(result.config)
