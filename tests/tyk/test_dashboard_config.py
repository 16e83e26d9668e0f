"""A Tyk Dashboard configuration (tyk_analytics.conf): recognised among the files, its
oauth_redirect_uri_separator taken (or refused with the reason), everything else reported as skipped
by name, and its secrets never echoed or sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from propylon.tyk.dashboard_config import is_dashboard_config, separator_problem, without_secrets
from propylon.tyk.files import classify_documents, read_tyk
from propylon.tyk.translate import TykImport, translate
from tests.tyk.test_translate import POLICIES, SAMPLES, jwt_api

SECRETS = ("admin-secret-value-1234", "mongo-password-5678", "node-secret-9012", "gateway-secret-3456",
           "redis-password-7890", "license-key-2468")


def dashboard_conf(**overrides: Any) -> dict[str, Any]:
    """A tyk_analytics.conf with the keys Tyk's Dashboard configuration reference lists (values
    made up here; the secret ones are in SECRETS)."""
    conf: dict[str, Any] = {
        "listen_port": 3000,
        "tyk_api_config": {"Host": "http://127.0.0.1", "Port": "8080", "Secret": "gateway-secret-3456"},
        "mongo_url": "mongodb://tyk:mongo-password-5678@127.0.0.1:27017/tyk_analytics",
        "page_size": 10,
        "admin_secret": "admin-secret-value-1234",
        "shared_node_secret": "node-secret-9012",
        "redis_host": "127.0.0.1",
        "redis_port": 6379,
        "redis_password": "redis-password-7890",
        "license_key": "license-key-2468",
        "email_backend": {"enable_email_notifications": False, "code": "sendgrid"},
        "host_config": {"enable_host_names": False},
        "oauth_redirect_uri_separator": ";",
    }
    conf.update(overrides)
    return conf


def with_separator(separator: object) -> TykImport:
    """The translation of one Dashboard configuration ``conf`` holding ``separator``."""
    conf = dashboard_conf(oauth_redirect_uri_separator=separator)
    return translate([], [], dashboard_configs=[("conf", conf)])


def report_text(result: TykImport) -> str:
    return "\n".join([*result.report.skipped, *result.report.notes,
                      *(f"{loc}: {msg}" for loc, msg in result.problems)])


def test_a_dashboard_config_is_recognised_and_gives_the_separator() -> None:
    docs = classify_documents([jwt_api(), dashboard_conf()], "upload")
    assert [where for where, _ in docs.dashboard_configs] == ["upload[1]"]
    assert len(docs.apis) == 1
    assert docs.unrecognised == []
    result = translate(docs.apis, POLICIES, dashboard_configs=docs.dashboard_configs)
    assert result.portal_settings == {"oauth_redirect_uri_separator": ";"}
    assert result.problems == []
    [skipped] = [line for line in result.report.skipped if "Tyk Dashboard configuration" in line]
    assert skipped.startswith("Tyk Dashboard configuration upload[1]: settings with no Propylon counterpart")
    for key in ("admin_secret", "mongo_url", "tyk_api_config", "listen_port", "license_key"):
        assert key in skipped
    assert "oauth_redirect_uri_separator" not in skipped
    text = report_text(result)
    assert not [secret for secret in SECRETS if secret in text]


@pytest.mark.parametrize("document", [
    {"oauth_redirect_uri_separator": "|"},  # a trimmed config holding only the setting
    {"mongo_url": "mongodb://127.0.0.1/tyk_analytics", "listen_port": 3000},
    {"tyk_api_config": {"Host": "http://127.0.0.1"}},
])
def test_trimmed_dashboard_configs_are_recognised(document: dict[str, Any]) -> None:
    assert is_dashboard_config(document)


@pytest.mark.parametrize("document", [
    # A Tyk Gateway tyk.conf has the separator too, for Tyk's own OAuth server: not the portal's.
    {"listen_port": 8080, "secret": "x", "app_path": "/opt/tyk-gateway/apps",
     "storage": {"type": "redis"}, "oauth_redirect_uri_separator": ";"},
    {"listen_port": 8080},
    jwt_api(),
    POLICIES[0],
])
def test_other_documents_are_not_taken_for_a_dashboard_config(document: dict[str, Any]) -> None:
    assert not is_dashboard_config(document)
    assert classify_documents(document).dashboard_configs == []


@pytest.mark.parametrize("separator", [";", ",", "|", ";;", "!", "$", "(|)", "^^^^", "\\"])
def test_separators_that_cannot_occur_inside_a_url_are_accepted(separator: str) -> None:
    assert separator_problem(separator) is None
    result = with_separator(separator)
    assert result.portal_settings == {"oauth_redirect_uri_separator": separator}


@pytest.mark.parametrize(("separator", "reason"), [
    (";;;;;", "1 to 4 characters, not 5"),
    (" ", "without spaces"),
    ("\t", "without spaces"),
    ("; ", "without spaces"),
    ("\x00", "without spaces"),
    ("¦", "printable ASCII"),
    ("a", "appear inside URLs"),
    ("7", "appear inside URLs"),
    (":", "appear inside URLs"),
    ("/", "appear inside URLs"),
    ("&", "appear inside URLs"),
    ("=", "appear inside URLs"),
    ("?", "appear inside URLs"),
    ("#", "appear inside URLs"),
    ("%", "appear inside URLs"),
    (".", "appear inside URLs"),
    ("|:", "appear inside URLs"),
    (5, "must be a string"),
    (["|"], "must be a string"),
])
def test_separators_that_would_cut_urls_apart_are_refused(separator: object, reason: str) -> None:
    problem = separator_problem(separator)
    assert problem is not None
    assert reason in problem
    result = with_separator(separator)
    assert result.portal_settings == {}
    assert result.problems == [("conf.oauth_redirect_uri_separator", problem)]


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_separator_leaves_the_portals_own(empty: str | None) -> None:
    result = with_separator(empty)
    assert (result.portal_settings, result.problems) == ({}, [])
    assert any("does not split" in note for note in result.report.notes)


def test_two_configs_must_agree() -> None:
    same = translate([], [], dashboard_configs=[("a", dashboard_conf()), ("b", dashboard_conf())])
    assert same.portal_settings == {"oauth_redirect_uri_separator": ";"}
    differing = translate([], [], dashboard_configs=[
        ("a", dashboard_conf()), ("b", dashboard_conf(oauth_redirect_uri_separator="|"))])
    assert differing.portal_settings == {}
    [(location, message)] = differing.problems
    assert location == "b.oauth_redirect_uri_separator"
    assert "differs from ';' in a" in message


def test_without_secrets_keeps_the_names_and_the_separator_only() -> None:
    blanked = without_secrets([dashboard_conf(), jwt_api()])
    assert blanked[1] == jwt_api()
    assert set(blanked[0]) == set(dashboard_conf())
    assert blanked[0]["oauth_redirect_uri_separator"] == ";"
    assert not [secret for secret in SECRETS if secret in json.dumps(blanked)]
    # What is sent is still recognised, and gives the same separator and report.
    sent = translate([], [], dashboard_configs=classify_documents(blanked).dashboard_configs)
    local = translate([], [], dashboard_configs=classify_documents(dashboard_conf()).dashboard_configs)
    assert sent.portal_settings == local.portal_settings
    assert sent.report.skipped == [line.replace("document", "document[0]") for line in local.report.skipped]


def test_a_directory_search_reads_tyk_analytics_conf(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "orders.json").write_text(json.dumps(jwt_api()))
    (tmp_path / "tyk_analytics.conf").write_text(json.dumps(dashboard_conf()))
    (tmp_path / "pump.conf").write_text("not JSON, and not read")
    docs = read_tyk(tmp_path)
    assert [where for where, _ in docs.dashboard_configs] == [str(tmp_path / "tyk_analytics.conf")]
    assert len(docs.apis) == 1


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "propylon.cli", "import-tyk", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


def test_the_cli_out_mode_says_the_separator_does_not_apply(tmp_path: Path) -> None:
    conf = tmp_path / "tyk_analytics.conf"
    conf.write_text(json.dumps(dashboard_conf()))
    out = tmp_path / "gateway.yaml"
    result = run_cli(str(conf), str(SAMPLES), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "oauth_redirect_uri_separator ';' is a portal setting, not applicable" in result.stderr
    assert "skipped: Tyk Dashboard configuration" in result.stderr
    assert "not recognised" not in result.stderr
    assert not [s for s in SECRETS if s in result.stderr + result.stdout + out.read_text()]

    conf.write_text(json.dumps(dashboard_conf(oauth_redirect_uri_separator="/")))
    refused = run_cli(str(conf), "--out", str(out))
    assert refused.returncode == 0, refused.stderr  # not applicable to a file, so only noted
    assert "--dashboard would refuse it" in refused.stderr


@pytest.fixture
def recording_dashboard() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server standing in for the dashboard's import endpoint: it records what the
    CLI sends and answers with an empty import result."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"created": [], "updated": ["portal-settings"], "unchanged": [],
                               "skipped": [], "notes": [], "unrecognised": [],
                               "config_version": 7, "dry_run": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_cli_sends_no_secret_to_the_dashboard(
    tmp_path: Path, recording_dashboard: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = recording_dashboard
    conf = tmp_path / "tyk_analytics.conf"
    conf.write_text(json.dumps(dashboard_conf()))
    result = run_cli(str(conf), str(SAMPLES), "--dashboard", url, env={"PROPYLON_ADMIN_TOKEN": "ppl_test"})
    assert result.returncode == 0, result.stderr
    assert "updated: portal-settings" in result.stdout
    [body] = received
    [sent] = [d for d in body["documents"] if isinstance(d, dict) and "admin_secret" in d]
    assert sent["oauth_redirect_uri_separator"] == ";"
    assert not [s for s in SECRETS if s in json.dumps(body)]
