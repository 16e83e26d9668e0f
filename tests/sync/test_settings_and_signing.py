"""Dashboard-mode settings, the snapshot signature, and the saved snapshot file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from propylon import cli
from propylon.cli import main
from propylon.domain.config_signing import sign_snapshot, verify_snapshot
from propylon.gateway.snapshot_file import (
    SnapshotRejected,
    decode_snapshot,
    load_snapshot,
    save_snapshot,
)
from propylon.settings import GatewaySettings
from tests.sync.harness import NODE_SECRET

BODY = json.dumps({"version": 3, "config": {"version": "3"}}).encode()


def test_signature_is_hmac_sha256_over_the_exact_bytes() -> None:
    signature = sign_snapshot(BODY, NODE_SECRET)
    assert signature.startswith("sha256=")
    assert len(signature) == len("sha256=") + 64
    assert verify_snapshot(BODY, signature, NODE_SECRET)
    assert not verify_snapshot(BODY + b"\n", signature, NODE_SECRET)
    assert not verify_snapshot(BODY, signature, NODE_SECRET + "x")
    assert not verify_snapshot(BODY, signature.upper(), NODE_SECRET)
    assert not verify_snapshot(BODY, "", NODE_SECRET)
    assert not verify_snapshot(BODY, "sha256=é", NODE_SECRET)


def test_decode_checks_signature_shape_and_version() -> None:
    snapshot = decode_snapshot(BODY, sign_snapshot(BODY, NODE_SECRET), NODE_SECRET)
    assert snapshot.version == 3
    assert snapshot.config.version == "3"
    cases = {
        b"[1]": "not a JSON object",
        b'{"version": "3", "config": {}}': "non-negative integer",
        b'{"version": true, "config": {}}': "non-negative integer",
        b'{"version": 3, "config": []}': "config must be a JSON object",
        b'{"version": 3, "config": {"version": "3", "apis": [{"id": "a"}]}}': "apis.0",
        b"{nope": "not valid JSON",
    }
    for body, problem in cases.items():
        with pytest.raises(SnapshotRejected, match=problem):
            decode_snapshot(body, sign_snapshot(body, NODE_SECRET), NODE_SECRET)


def test_the_saved_snapshot_round_trips_and_is_verified_again(tmp_path: Path) -> None:
    path = tmp_path / "state" / "config-snapshot.json"
    assert load_snapshot(path, NODE_SECRET) is None
    snapshot = decode_snapshot(BODY, sign_snapshot(BODY, NODE_SECRET), NODE_SECRET)
    save_snapshot(path, snapshot)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    loaded = load_snapshot(path, NODE_SECRET)
    assert loaded is not None
    assert (loaded.version, loaded.body, loaded.signature) == (3, BODY, snapshot.signature)
    with pytest.raises(SnapshotRejected, match="signature"):
        load_snapshot(path, "another-secret-0123456789abcdef-xyz")
    path.write_text("{}")
    with pytest.raises(SnapshotRejected, match="not a saved snapshot"):
        load_snapshot(path, NODE_SECRET)


def test_dashboard_mode_settings(tmp_path: Path) -> None:
    settings = GatewaySettings(dashboard_url="http://127.0.0.1:3000", node_secret=NODE_SECRET)
    assert settings.node_id == socket.gethostname()
    assert NODE_SECRET not in repr(settings)
    with pytest.raises(ValidationError, match="mutually exclusive"):
        GatewaySettings(
            dashboard_url="http://127.0.0.1:3000", node_secret=NODE_SECRET,
            config_file=tmp_path / "gw.yaml",
        )
    with pytest.raises(ValidationError, match="needs node_secret"):
        GatewaySettings(dashboard_url="http://127.0.0.1:3000")
    for url in ("ftp://x", "http://user:pw@host", "127.0.0.1:3000"):
        with pytest.raises(ValidationError, match="dashboard_url"):
            GatewaySettings(dashboard_url=url, node_secret=NODE_SECRET)
    with pytest.raises(ValidationError, match="node_id"):
        GatewaySettings(dashboard_url="http://h", node_secret=NODE_SECRET, node_id="a b")


@pytest.mark.parametrize("secret", ["", "short-secret-value", " " * 40])
def test_a_short_node_secret_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32") as caught:
        GatewaySettings(dashboard_url="http://127.0.0.1:3000", node_secret=secret)
    if secret.strip():
        assert secret not in str(caught.value)


def test_cli_gateway_takes_the_node_secret_from_the_environment_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The command group would reconfigure process-wide logging onto the runner's dying streams.
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    monkeypatch.delenv("PROPYLON_CONFIG_FILE", raising=False)
    monkeypatch.delenv("PROPYLON_DASHBOARD_URL", raising=False)
    monkeypatch.delenv("PROPYLON_NODE_SECRET", raising=False)
    runner = CliRunner()
    result = runner.invoke(main, ["gateway"])
    assert result.exit_code == 2
    assert "--dashboard URL" in result.output
    result = runner.invoke(main, ["gateway", "--dashboard", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "PROPYLON_NODE_SECRET" in result.output
    monkeypatch.setenv("PROPYLON_NODE_SECRET", "too-short-but-secret")
    result = runner.invoke(main, ["gateway", "--dashboard", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "at least 32" in result.output
    assert "too-short-but-secret" not in result.output
    result = runner.invoke(main, ["gateway", "--help"])
    assert "--dashboard" in result.output
    assert "--node-secret" not in result.output


def test_a_verified_token_cache_of_zero_is_refused_at_load(tmp_path: Path) -> None:
    # It used to pass the settings and then stop the gateway with a ValueError from the verifier.
    with pytest.raises(ValidationError, match="verified_token_cache"):
        GatewaySettings(config_file=tmp_path / "gw.yaml", verified_token_cache=0)
    settings = GatewaySettings(config_file=tmp_path / "gw.yaml", verified_token_cache=1)
    assert settings.verified_token_cache == 1
