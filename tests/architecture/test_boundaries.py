"""The import rules of DESIGN.md §2, checked on the source: each part imports only what it may.

``domain`` ← ``policy`` ← ``gateway``; the data plane never imports the control plane, the portal
or the embedded IdP; pure parts do no I/O imports. Every module must also import on its own (no
hidden dependence on import order) and stay under 900 lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "propylon"

# part -> the parts of propylon it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "policy": {"domain"},
    "storage": {"domain", "policy"},
    "analytics": {"domain"},
    "gateway": {"domain", "policy", "storage", "analytics", "settings", "logs", "outbound"},
    "demo": {"domain", "gateway", "settings"},
    "settings": set(),
    "logs": set(),
    "tyk": {"domain"},
    "idp": {"domain", "outbound"},
    # The SSRF guard both planes share: it depends on nothing of Propylon's.
    "outbound": set(),
    "web": {"domain", "settings", "logs"},
    "dashboard": {"domain", "policy", "storage", "analytics", "idp", "tyk", "settings", "logs", "web",
                  "portal", "outbound"},
    "portal": {"domain", "policy", "storage", "idp", "web", "dashboard", "settings", "logs"},
    "provider": {"web"},
    "stack": {"demo", "storage"},
    "cli": {"domain", "gateway", "dashboard", "storage", "demo", "settings", "logs", "tyk", "provider", "web",
            "stack"},
}
# Modules that must stay free of I/O and frameworks.
PURE_PARTS = {"domain", "policy"}
IO_MODULES = {"asyncio", "socket", "httpx", "httptools", "uvloop", "sqlite3", "redis", "os", "subprocess"}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def _part(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else ""


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_imports_respect_the_layering(path: Path) -> None:
    part = _part(path)
    if not part:
        return
    assert part in ALLOWED, f"new top-level part {part!r}: add its rule to this test"
    for name in _imports(path):
        if name.startswith("propylon."):
            target = name.split(".")[1]
            assert target == part or target in ALLOWED[part], f"{part} must not import {name}"
        if part in PURE_PARTS:
            assert name.split(".")[0] not in IO_MODULES, f"pure part {part} imports {name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_size_and_docstring(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= 900, "split this module: it is over 900 lines"
    assert ast.get_docstring(ast.parse(source)), "every module starts with a docstring"


def test_every_module_imports_on_its_own() -> None:
    names = [_module_name(p) for p in _modules()]
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'propylon' or m.startswith('propylon.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
