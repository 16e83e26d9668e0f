"""Running the curl commands a portal page shows, exactly as shown, and reading their answers.

The commands go to ``bash -c`` unchanged, with ``ACCESS_TOKEN`` and ``GATEWAY_URL`` in the
environment (the lines may use them) and no proxy variables. The HTTP status is read without
touching the command: ``CURL_HOME`` points at a ``.curlrc`` of our own that makes curl silent and
append the status on a last line (it also keeps a developer's own ``~/.curlrc`` out of the test).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

CURLRC = 'silent\nshow-error\nwrite-out = "\\n%{http_code}"\nmax-time = 10\n'


@dataclass(frozen=True)
class CurlAnswer:
    """What a shown curl command printed: the body and the status curl reported."""

    status: int
    body: str
    stderr: str


def run_shown(command: str, curl_home: Path, **variables: str) -> CurlAnswer:
    """Run ``command`` as a developer pasting it into bash would, with ``variables`` exported."""
    curl_home.mkdir(parents=True, exist_ok=True)
    (curl_home / ".curlrc").write_text(CURLRC)
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(curl_home),
                   "CURL_HOME": str(curl_home), **variables}
    done = subprocess.run(["bash", "-c", command], env=environment, capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.returncode == 0, f"{command!r} failed ({done.returncode}): {done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    return CurlAnswer(status=int(status), body=body, stderr=done.stderr)
