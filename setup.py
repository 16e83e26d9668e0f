"""Build hook: with PROPYLON_COMPILE=1, compile the gateway's hot path to C with mypyc.

Everything else about the package lives in pyproject.toml. The compiled build is opt-in because an
editable development install must run the source as edited (a compiled module next to its source
would shadow every later edit). Build it non-editable, with mypy available and build isolation
off: ``PROPYLON_COMPILE=1 pip install --no-build-isolation .`` (``make compiled`` does this).
"""

from __future__ import annotations

import os

from setuptools import setup

# Typed modules on the per-request path; each compiles unchanged. The rest stays interpreted.
HOT_PATH = [
    "src/propylon/gateway/server.py",
    "src/propylon/gateway/upstream.py",
    "src/propylon/gateway/paths.py",
    "src/propylon/gateway/exchange.py",
    "src/propylon/gateway/chain.py",
    "src/propylon/gateway/runtime.py",
    "src/propylon/gateway/tokens.py",
    "src/propylon/gateway/steps/base.py",
    "src/propylon/gateway/steps/identify.py",
    "src/propylon/gateway/steps/access_rights.py",
    "src/propylon/gateway/steps/rate_limit.py",
    "src/propylon/policy/rate.py",
    "src/propylon/policy/quota.py",
    "src/propylon/policy/access.py",
    "src/propylon/storage/memory_counters.py",
    # Records are queued and serialised on the event loop for every request. The record
    # (domain/analytics.py) is a named tuple built with tuple.__new__ and unpacked by the writer,
    # so nothing of it runs as Python code per request: compiling it would gain nothing.
    "src/propylon/analytics/buffer.py",
    "src/propylon/analytics/jsonl.py",
    # One ISO timestamp per record, formatted by the writer on the event loop.
    "src/propylon/domain/timestamps.py",
]

ext_modules = []
if os.environ.get("PROPYLON_COMPILE") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(HOT_PATH, opt_level="3")

setup(ext_modules=ext_modules)
