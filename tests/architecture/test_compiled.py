"""The hot path is compiled exactly when it should be.

``make test-compiled`` runs the data-plane suites against a mypyc build and sets
``PROPYLON_EXPECT_COMPILED=1``: every module listed in ``setup.py`` must then be an extension
module, or that run silently tested the interpreted code. In the development install the same
modules must be plain source, or edits would be shadowed by stale compiled files.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _hot_path_modules() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "HOT_PATH":
            paths = ast.literal_eval(node.value)
            break
    else:
        raise AssertionError("setup.py has no HOT_PATH list")
    assert all((ROOT / p).is_file() for p in paths), "setup.py lists a missing file"
    return [p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths]


def test_hot_path_modules_are_compiled_exactly_when_expected() -> None:
    expected = os.environ.get("PROPYLON_EXPECT_COMPILED") == "1"
    modules = _hot_path_modules()
    assert len(modules) >= 10
    for name in modules:
        path = importlib.import_module(name).__file__ or ""
        assert path.endswith(".so") == expected, f"{name} loaded from {path}"
