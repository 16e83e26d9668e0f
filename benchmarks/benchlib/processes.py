"""Starting, probing and stopping the processes the benchmark runs (and only those).

Every server runs in the foreground in its own session with its output in files under the run's
temp dir. Stopping sends SIGTERM to the PID we started, waits, then SIGKILLs what is left of *that*
process group (the server's own workers); nothing is ever looked up or killed by name.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class BenchError(RuntimeError):
    """A setup step failed; the message says what to do about it."""


def find_tool(name: str) -> str | None:
    """``name`` on PATH or in the sbin dirs (nginx lives in /usr/sbin, often not on PATH)."""
    extra = os.pathsep.join(_SBIN_DIRS)
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + extra)


def require_tools(names: Sequence[str]) -> dict[str, str]:
    """Paths of the named tools, or a BenchError telling how to install the missing ones."""
    found = {name: find_tool(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise BenchError(
            f"missing tool(s): {', '.join(missing)}. On Debian/Ubuntu install them with:\n"
            "    sudo apt-get install -y nginx haproxy wrk\n"
            "(nginx and haproxy are only started on loopback by this script; their system "
            "services are not used or touched.)"
        )
    return {name: path for name, path in found.items() if path is not None}


def free_port() -> int:
    """An unused loopback TCP port (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_template(name: str, values: dict[str, object]) -> str:
    """``templates/<name>`` with every ``{{key}}`` replaced; unknown keys are an error."""
    text = (TEMPLATES / name).read_text()

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise BenchError(f"template {name} needs a value for {{{{{key}}}}}")
        return str(values[key])

    return _PLACEHOLDER.sub(substitute, text)


@dataclass
class ManagedProcess:
    """A server this script started; ``stop`` ends it and its process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output_tail(self, max_chars: int = 4000) -> str:
        """The end of the process's stdout+stderr, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no output captured)"

    def stop(self, grace_s: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace_s)
        _kill_leftover_group(self.popen.pid)


def _kill_leftover_group(pgid: int) -> None:
    """SIGKILL what remains of a session we created (workers whose master already exited)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def start_process(
    name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None
) -> ManagedProcess:
    """Start ``argv`` in its own session with output to ``workdir/<name>.log``; ``env`` is added
    to this process's environment."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(port: int, token: str | None, path: str = "/", timeout_s: float = 5.0) -> int:
    """Status of one GET to loopback ``port``, with ``Authorization: Bearer <token>`` if given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_ready(
    process: ManagedProcess,
    port: int,
    probe: Callable[[], bool],
    timeout_s: float = 20.0,
) -> None:
    """Poll until ``port`` accepts connections and ``probe()`` is true, or raise with the log."""
    deadline = time.monotonic() + timeout_s
    last_error = "port never opened"
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise BenchError(
                f"{process.name} exited with status {process.popen.returncode} before it was "
                f"ready. Its output:\n{process.output_tail()}"
            )
        if port_open(port):
            try:
                if probe():
                    return
                last_error = "readiness probe did not return 200"
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"readiness probe failed: {exc!r}"
        time.sleep(0.1)
    raise BenchError(
        f"{process.name} (pid {process.pid}) not ready on 127.0.0.1:{port} after {timeout_s:.0f}s "
        f"({last_error}). Its output:\n{process.output_tail()}"
    )
