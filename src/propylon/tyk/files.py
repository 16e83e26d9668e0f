"""Read Tyk Classic export files: API definitions and policies, in the shapes Tyk writes them.

A file may hold one API definition, a list of them, one policy, a list of policies, a mapping of
policy id → policy (Tyk's ``policies.json``), a dashboard export with ``apis``/``policies``
lists, or a Tyk Dashboard configuration (``tyk_analytics.conf``, see ``dashboard_config.py``).
Anything else is reported as not recognised. In a directory, ``*.json`` files and files named
``tyk_analytics.conf`` are read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from propylon.tyk.dashboard_config import is_dashboard_config

DASHBOARD_CONFIG_NAME = "tyk_analytics.conf"
"""The Tyk Dashboard configuration's default file name, also read when searching a directory."""


class TykFileError(ValueError):
    """A file could not be read or decoded."""


@dataclass
class TykDocuments:
    """API definitions, policies and Dashboard configurations (each with where it was found)
    gathered from files, and what was not recognised."""

    apis: list[Mapping[str, Any]] = field(default_factory=list)
    policies: list[Mapping[str, Any]] = field(default_factory=list)
    dashboard_configs: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)

    def add(self, other: TykDocuments) -> None:
        """Append what ``other`` found."""
        self.apis += other.apis
        self.policies += other.policies
        self.dashboard_configs += other.dashboard_configs
        self.unrecognised += other.unrecognised


def read_tyk(path: Path) -> TykDocuments:
    """Read ``path`` (a JSON file, or a directory searched recursively for ``*.json``)."""
    docs = TykDocuments()
    for where, data in read_json_documents(path):
        _classify(data, where, docs)
    return docs


def read_json_documents(path: Path) -> list[tuple[str, Any]]:
    """The decoded JSON of ``path`` (or of every ``*.json`` and ``tyk_analytics.conf`` below it),
    with each file's name."""
    found = {*path.rglob("*.json"), *path.rglob(DASHBOARD_CONFIG_NAME)} if path.is_dir() else {path}
    files = sorted(found)
    if not files:
        raise TykFileError(f"{path}: no JSON files (or {DASHBOARD_CONFIG_NAME}) found")
    documents = []
    for file in files:
        try:
            documents.append((str(file), json.loads(file.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TykFileError(f"{file}: {exc}") from exc
    return documents


def classify_documents(data: Any, where: str = "document") -> TykDocuments:
    """Sort already-decoded Tyk JSON (a definition, a list, policies.json, a dashboard export, a
    Dashboard configuration) as :func:`read_tyk` does for files."""
    docs = TykDocuments()
    _classify(data, where, docs)
    return docs


def _classify(data: Any, where: str, docs: TykDocuments) -> None:
    if isinstance(data, list):
        for index, item in enumerate(data):
            _classify(item, f"{where}[{index}]", docs)
    elif not isinstance(data, Mapping):
        docs.unrecognised.append(where)
    elif "proxy" in data and "api_id" in data:
        docs.apis.append(data)
    elif "api_definition" in data and isinstance(data["api_definition"], Mapping):
        docs.apis.append(data["api_definition"])  # a Tyk Dashboard API export wraps it
    elif "access_rights" in data:
        docs.policies.append(data)
    elif is_dashboard_config(data):
        docs.dashboard_configs.append((where, data))
    elif "apis" in data or "policies" in data:
        for key in ("apis", "policies"):
            _classify(data.get(key) or [], f"{where}.{key}", docs)
    elif data and all(isinstance(v, Mapping) and "access_rights" in v for v in data.values()):
        # policies.json: id → policy; the key is the id.
        docs.policies.extend({"id": key, **value} for key, value in data.items())
    else:
        docs.unrecognised.append(where)
