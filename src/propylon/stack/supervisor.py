"""Starting, watching and stopping the processes of the embedded stack (``propylon up``).

Each part of the stack is one of Propylon's own commands (``propylon idp``, ``propylon dashboard``,
``propylon gateway --dashboard``) run as a child process, so that ``up`` exercises exactly what a
production deployment runs and a busy dashboard never slows the gateway's event loop. Children get
a session of their own: a Ctrl-C in the terminal reaches only the supervisor, which then stops them
in order (gateway first, so that its analytics reach the dashboard before the dashboard stops). On
Linux a child also receives SIGTERM if the supervisor dies without stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

STOP_TIMEOUT = 15.0
"""Seconds a child has to stop after SIGTERM before it is killed."""

READY_TIMEOUT = 60.0
"""Seconds a child has to start answering HTTP."""


class StackError(Exception):
    """The stack cannot start or keep running; ``str()`` is a one-line reason for the user."""


@dataclass(frozen=True)
class ChildSpec:
    """One command of the stack."""

    name: str
    """Shown in messages (``gateway``, ``dashboard``, ``idp``)."""
    args: Sequence[str]
    """Arguments after ``propylon``."""
    ready_url: str
    """A URL that answers (any status) once the child serves."""
    log_file: Path
    """Where the child's standard output and error go."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment (secrets travel here, never on the command line)."""


@dataclass
class Child:
    """A started child process."""

    spec: ChildSpec
    process: asyncio.subprocess.Process

    def log_tail(self, lines: int = 15) -> str:
        """The end of the child's log, for error messages."""
        try:
            text = self.spec.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def ensure_port_free(host: str, port: int, what: str, flag: str) -> None:
    """:class:`StackError` with a clear message when ``host:port`` is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StackError(f"port {port} ({what}) is already in use on {host}: stop the "
                                 f"other program or choose another port with {flag}") from exc
            raise StackError(f"cannot listen on {host}:{port} ({what}): "
                             f"{exc.strerror or exc}") from exc


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the supervisor dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def arrange() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return arrange


async def start_child(spec: ChildSpec) -> Child:
    """Start ``spec`` and wait until it answers HTTP; :class:`StackError` (with the end of its log)
    when it exits or does not answer in time."""
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
    with spec.log_file.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "propylon.cli", *spec.args,
            stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=asyncio.subprocess.STDOUT,
            env=environment, start_new_session=True, preexec_fn=_die_with_parent(),
        )
    child = Child(spec, process)
    try:
        await _wait_ready(child)
    except BaseException:
        await stop_child(child)
        raise
    return child


async def _wait_ready(child: Child) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
        while loop.time() < deadline:
            if child.process.returncode is not None:
                raise StackError(f"{child.spec.name} exited with status {child.process.returncode} "
                                 f"while starting; the end of {child.spec.log_file}:\n"
                                 f"{child.log_tail()}")
            try:
                await client.get(child.spec.ready_url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise StackError(f"{child.spec.name} did not answer at {child.spec.ready_url} within "
                     f"{READY_TIMEOUT:g} s; see {child.spec.log_file}")


async def stop_child(child: Child) -> int | None:
    """SIGTERM ``child``, wait for it (killed after :data:`STOP_TIMEOUT`); its exit status."""
    process = child.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return process.returncode


async def first_exit(children: Sequence[Child]) -> Child:
    """Wait until one of ``children`` exits; that child."""
    waits = {asyncio.ensure_future(child.process.wait()): child for child in children}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    return waits[next(iter(done))]
