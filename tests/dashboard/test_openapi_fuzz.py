"""Schemathesis against the admin API's own OpenAPI document, on a real ``propylon dashboard``
process, on both database backends: thousands of generated requests (valid and invalid), and not
one may get a 500, a response outside its documented schema, or a wrong content type."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import admin_token, free_port, start_dashboard, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_generated_requests_never_break_the_admin_api(database_url: str, tmp_path: Path) -> None:
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is a test dependency (pyproject.toml)"
    port = free_port()
    log = tmp_path / "dashboard.log"
    proc = start_dashboard(port, str(tmp_path / "data"), log, PROPYLON_DATABASE_URL=database_url)
    try:
        base = f"http://127.0.0.1:{port}"
        token = admin_token(base)
        run = subprocess.run(
            [schemathesis, "run", f"{base}/api/openapi.json",
             "-H", f"Authorization: Bearer {token}",
             "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
             "--phases", "examples,coverage,fuzzing", "--max-examples", "25",
             "--generation-deterministic", "--no-color",
             # one worker: hypothesis parses lambdas with ast in each thread, and CPython 3.11's ast
             # is not thread-safe ("AST constructor recursion depth mismatch").
             "--workers", "1",
             "--report", "junit", "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )
    finally:
        code = stop(proc)
    err = log.read_text(errors="replace")
    assert run.returncode == 0, run.stdout[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts, run.stdout[-3000:]
    generated, passed = int(counts[1]), int(counts[2])
    # A run that silently generated little (a broken spec, auth refused everywhere) is not a pass.
    assert generated == passed, run.stdout[-3000:]
    assert generated > 1000, run.stdout[-3000:]
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-4000:]
