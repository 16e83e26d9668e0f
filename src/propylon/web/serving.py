"""Serving the dashboard and the embedded IdP with uvicorn: the listening socket and the server.

Both bind their socket themselves before uvicorn starts, so that a taken port is refused before
anything else happens (no database created, no key generated) with a message naming the flag that
changes it; and both run uvicorn without its own signal handling (see :class:`AnnouncingServer`).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator

import uvicorn


class ListenError(Exception):
    """The address cannot be listened on; ``str()`` says why and what to do, in one line."""


def bind_socket(host: str, port: int, *, port_hint: str) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening). ``port_hint`` names how to choose
    another port, e.g. ``"--port (PROPYLON_DASHBOARD_PORT)"``; :class:`ListenError` when the port is
    taken or the address is not this host's."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: unknown address ({exc.strerror})") from exc
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted server bind while old connections sit in TIME_WAIT; on Linux it still
        # refuses a port another process is listening on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} on {host} is already in use; stop the other program or "
                              f"choose another port with {port_hint}") from exc
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server without its own signal handling (its handlers re-raise the signal after a
    graceful stop, which would end the process with -SIGTERM instead of status 0; the caller owns
    signals), calling ``announce`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self._announce = announce

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signals to the caller."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start, then announce."""
        await super().startup(sockets=sockets)
        if self.started:
            self._announce()
