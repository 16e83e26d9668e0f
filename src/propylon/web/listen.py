"""Binding a server's listening socket, with a one-line reason when it cannot be done.

The dashboard and the embedded IdP bind their socket themselves before uvicorn starts, so that a
taken port is refused before anything else happens (no database created, no key generated) with a
message naming the flag that changes it.
"""

from __future__ import annotations

import errno
import socket


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
