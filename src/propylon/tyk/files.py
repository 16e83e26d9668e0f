"""Read Tyk Classic export files: API definitions and policies, in the shapes Tyk writes them.

A file may hold one API definition, a list of them, one policy, a list of policies, a mapping of
policy id → policy (Tyk's ``policies.json``), or a dashboard export with ``apis``/``policies``
lists. Anything else is reported as not recognised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TykFileError(ValueError):
    """A file could not be read or decoded."""


@dataclass
class TykDocuments:
    """API definitions and policies gathered from files, and what was not recognised."""

    apis: list[Mapping[str, Any]] = field(default_factory=list)
    policies: list[Mapping[str, Any]] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)


def read_tyk(path: Path) -> TykDocuments:
    """Read ``path`` (a JSON file, or a directory searched recursively for ``*.json``)."""
    docs = TykDocuments()
    for where, data in read_json_documents(path):
        _classify(data, where, docs)
    return docs


def read_json_documents(path: Path) -> list[tuple[str, Any]]:
    """The decoded JSON of ``path`` (or of every ``*.json`` below it), with each file's name."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    if not files:
        raise TykFileError(f"{path}: no JSON files found")
    documents = []
    for file in files:
        try:
            documents.append((str(file), json.loads(file.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TykFileError(f"{file}: {exc}") from exc
    return documents


def classify_documents(data: Any, where: str = "document") -> TykDocuments:
    """Sort already-decoded Tyk JSON (a definition, a list, policies.json, a dashboard export) into
    API definitions and policies, as :func:`read_tyk` does for files."""
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
    elif "apis" in data or "policies" in data:
        for key in ("apis", "policies"):
            _classify(data.get(key) or [], f"{where}.{key}", docs)
    elif data and all(isinstance(v, Mapping) and "access_rights" in v for v in data.values()):
        # policies.json: id → policy; the key is the id.
        docs.policies.extend({"id": key, **value} for key, value in data.items())
    else:
        docs.unrecognised.append(where)
