"""The client side of ``propylon import-tyk --dashboard URL``: send the files' JSON to the
dashboard's import endpoint and print its report.

The admin token comes from ``PROPYLON_ADMIN_TOKEN`` (never a flag, so it does not show in ``ps``).
Of a Tyk Dashboard configuration only the setting names and ``oauth_redirect_uri_separator`` are
sent: its secrets (``admin_secret``, ``mongo_url``...) never leave this machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import httpx

from propylon.tyk.dashboard_config import without_secrets
from propylon.tyk.files import TykFileError, read_json_documents


def import_into_dashboard(
    url: str, paths: Sequence[Path], issuers: Mapping[str, str], *, dry_run: bool
) -> int:
    """POST the Tyk files under ``paths`` to ``url``; print the report; return an exit status."""
    token = os.environ.get("PROPYLON_ADMIN_TOKEN", "").strip()
    if not token:
        raise click.ClickException("set PROPYLON_ADMIN_TOKEN to an admin API token of the dashboard")
    try:
        documents = [without_secrets(data) for path in paths for _, data in read_json_documents(path)]
    except TykFileError as exc:
        raise click.ClickException(str(exc)) from exc
    body = {"documents": documents, "issuers": dict(issuers), "dry_run": dry_run}
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/api/v1/import/tyk", json=body, timeout=60.0, trust_env=False,
            headers={"Authorization": f"Bearer {token}"}, follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the dashboard at {url}: {exc}") from exc
    payload = _json(response)
    if response.status_code != 200:
        message = payload.get("message", response.text[:200])
        click.echo(f"import refused ({response.status_code}): {message}", err=True)
        for problem in payload.get("problems", []):
            click.echo(f"  - {problem.get('location')}: {problem.get('message')}", err=True)
        return 1
    prefix = "would be " if dry_run else ""
    for key in ("created", "updated", "unchanged"):
        for name in payload.get(key, []):
            click.echo(f"{prefix}{key}: {name}")
    for key, label in (("unrecognised", "not recognised"), ("skipped", "skipped"), ("notes", "note")):
        for line in payload.get(key, []):
            click.echo(f"  {label}: {line}", err=True)
    version = payload.get("config_version")
    click.echo(f"config version {version}" if version is not None else "nothing changed", err=True)
    return 0


def _json(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or an empty one when it has none (e.g. a proxy's HTML page)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
