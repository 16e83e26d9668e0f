"""Signing keys (files, rotation, retirement, restart), ES256, and production mode's refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import jwt
import pydantic
import pytest

from propylon.provider.settings import ProviderSettings
from tests.provider.conftest import RunningIdp, client_token, register, start_idp
from tests.provider.test_tokens import verify
from tests.support.processes import free_port

pytestmark = pytest.mark.slow


def _introspect(http: httpx.Client, idp: RunningIdp, client: dict[str, str], token: str) -> bool:
    answer = http.post(f"{idp.issuer}/introspect", data={"token": token},
                       auth=(client["client_id"], client["client_secret"])).json()
    return bool(answer["active"])


def test_rotation_keeps_old_tokens_verifiable_until_retirement(tmp_path: Path, http: httpx.Client) -> None:
    idp = start_idp(tmp_path)
    try:
        client = register(http, idp)
        old_token = client_token(http, idp, client).json()["access_token"]
        old_kid = jwt.get_unverified_header(old_token)["kid"]

        rotated = idp.cli("rotate-keys")
        assert rotated.returncode == 0, rotated.stderr
        new_kid = rotated.stdout.split()[3]
        new_token = client_token(http, idp, client).json()["access_token"]
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
        assert {key["kid"] for key in http.get(f"{idp.issuer}/jwks").json()["keys"]} == {old_kid, new_kid}
        verify(idp, http, old_token)
        verify(idp, http, new_token)
        assert _introspect(http, idp, client, old_token)

        listed = idp.cli("list-keys").stdout
        assert f"{new_kid}  RS256" in listed
        assert "(active)" in listed.splitlines()[-1]
        kept = idp.cli("retire-keys", "--older-than", "1h")
        assert kept.stdout.strip() == "retired 0 key(s)"
        retired = idp.cli("retire-keys", "--older-than", "0")
        assert retired.returncode == 0, retired.stderr
        assert retired.stdout.strip() == f"retired 1 key(s): {old_kid}"
        assert [key["kid"] for key in http.get(f"{idp.issuer}/jwks").json()["keys"]] == [new_kid]
        with pytest.raises(KeyError):
            verify(idp, http, old_token)
        assert not _introspect(http, idp, client, old_token)
        assert _introspect(http, idp, client, new_token)
        bad = idp.cli("retire-keys", "--older-than", "soon")
        assert bad.returncode == 2
        assert "expected seconds" in bad.stderr
    finally:
        idp.stop()


def test_keys_and_clients_persist_across_restart(tmp_path: Path, http: httpx.Client) -> None:
    idp = start_idp(tmp_path)
    client = register(http, idp)
    token = client_token(http, idp, client).json()["access_token"]
    jwks = http.get(f"{idp.issuer}/jwks").json()
    assert idp.stop() == 0
    key_files = list((idp.data_dir / "idp-keys").iterdir())
    assert len(key_files) == 1
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((idp.data_dir / "idp-keys").stat().st_mode) == 0o700
    idp.start()
    try:
        assert http.get(f"{idp.issuer}/jwks").json() == jwks
        verify(idp, http, token)
        assert _introspect(http, idp, client, token)
        again = client_token(http, idp, client).json()["access_token"]
        assert jwt.get_unverified_header(again)["kid"] == jwt.get_unverified_header(token)["kid"]
        assert "generated a development signing key" not in idp.output()
    finally:
        idp.stop()


def test_es256_signing_by_setting(tmp_path: Path, http: httpx.Client) -> None:
    idp = start_idp(tmp_path, PROPYLON_IDP_SIGNING_ALG="ES256", PROPYLON_IDP_AUDIENCE="urn:propylon:api",
                    PROPYLON_IDP_DEFAULT_POLICY="bronze", PROPYLON_IDP_TOKEN_LIFETIME="120")
    try:
        client = register(http, idp)
        token = client_token(http, idp, client).json()["access_token"]
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES256"
        assert header["typ"] == "at+jwt"
        claims = verify(idp, http, token)
        assert claims["pol"] == "bronze"
        assert claims["exp"] - claims["iat"] == 120
        assert http.get(f"{idp.issuer}/jwks").json()["keys"][0]["kty"] == "EC"
    finally:
        idp.stop()


def test_demo_token_from_the_environment(tmp_path: Path, http: httpx.Client) -> None:
    demo = "demo-initial-access-token-for-seeding"
    idp = start_idp(tmp_path, PROPYLON_IDP_DEMO_INITIAL_ACCESS_TOKEN=demo)
    try:
        register(http, idp, demo)
        assert "accepting the demo initial access token" in idp.output()
        assert demo not in idp.output()
    finally:
        idp.stop()


def test_production_mode_refuses_development_defaults(tmp_path: Path, http: httpx.Client) -> None:
    data_dir = tmp_path / "prod"
    # Port 0: the refusal must come from the missing key, whatever listens on 9400.
    idp = RunningIdp(data_dir, 0, env={"PROPYLON_IDP_PRODUCTION": "true", "PROPYLON_IDP_PORT": "0"})
    no_keys = idp.cli()
    assert no_keys.returncode == 2
    assert "no RS256 signing key" in no_keys.stderr
    assert "rotate-keys" in no_keys.stderr
    demo = RunningIdp(data_dir, 0, env={"PROPYLON_IDP_PRODUCTION": "true",
                                        "PROPYLON_IDP_DEMO_INITIAL_ACCESS_TOKEN": "x" * 32}).cli("list-keys")
    assert demo.returncode == 2
    assert "refuses demo_initial_access_token" in demo.stderr
    assert "x" * 32 not in demo.stderr
    public = RunningIdp(data_dir, 0, env={"PROPYLON_IDP_PRODUCTION": "true",
                                          "PROPYLON_IDP_ISSUER": "http://idp.example.com"}).cli("list-keys")
    assert public.returncode == 2
    assert "https issuer" in public.stderr

    assert idp.cli("rotate-keys").returncode == 0
    idp = RunningIdp(data_dir, free_port(), env={"PROPYLON_IDP_PRODUCTION": "true"}).start()
    try:
        assert "DEVELOPMENT DEFAULT" not in idp.output()
        register(http, idp, idp.iat())
    finally:
        idp.stop()


@pytest.mark.parametrize(("settings", "message"), [
    ({"production": True, "issuer": "http://10.0.0.5:9400"}, "https issuer"),
    ({"production": True, "demo_initial_access_token": "y" * 20}, "refuses demo_initial_access_token"),
    ({"issuer": "ftp://x"}, "absolute http(s) URL"),
    ({"issuer": "https://idp.example/"}, "must not end with '/'"),
    ({"issuer": "https://idp.example?x=1"}, "must not carry"),
    ({"demo_initial_access_token": "short"}, "at least 16"),
    ({"signing_alg": "HS256"}, "RS256"),
])
def test_settings_refusals(settings: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ProviderSettings(**settings)  # type: ignore[arg-type]


def test_settings_accept_production_on_loopback_and_https() -> None:
    assert ProviderSettings(production=True).effective_issuer == "http://127.0.0.1:9400"
    assert ProviderSettings(production=True, issuer="https://idp.example").effective_issuer == "https://idp.example"
    assert ProviderSettings(port=9555).effective_issuer == "http://127.0.0.1:9555"
