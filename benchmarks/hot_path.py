"""Microseconds of gateway Python per proxied request, without the network.

The loopback benchmark (``gateway.py``) measures what users see, but on a shared 2-core machine its
numbers move by ±10 % between runs, too much to judge a change of a few microseconds. This script
drives the real front end (``ClientConnection``), the real compiled chain (JWT from the verified
token cache, access rights, rate limit) and the real upstream protocol (``UpstreamConnection``),
with in-memory transports in place of sockets: it feeds a request, feeds the upstream's response,
and times the round. What it leaves out is exactly the kernel's part (reads, writes, epoll).

The analytics records are serialised as the buffer's flush would do it (``prepare`` every 256
records, on the same thread), since that work runs on the event loop too; only the file write,
which runs in a worker thread, is left out. ``--no-serialise`` leaves serialisation out as well
(what this script measured before).

    .venv/bin/python benchmarks/hot_path.py [--requests 50000] [--tokens 1000] [--no-analytics]

It prints the best and the median of several runs, in µs per request. ``instructions.py`` runs
the same loop under callgrind and reports instructions per request, which does not depend on how
busy the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.tokens import generate_keys, jwks_server, mint_tokens
from propylon.domain.config import parse_config
from propylon.gateway.service import GatewayService
from propylon.gateway.upstream import UpstreamConnection
from propylon.settings import GatewaySettings

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 16:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"
)
FLUSH_EVERY = 256


class MemoryTransport:
    """Just enough of an asyncio transport: remembers what was written."""

    def __init__(self) -> None:
        self.written = 0
        self.writes = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def bench_config(issuer: str) -> dict[str, Any]:
    """JWT (RS256, audience checked), a rate limit that never refuses, access rights."""
    return {
        "identity_providers": [{"id": "bench-idp", "issuer": issuer, "jwks_uri": f"{issuer}/jwks",
                                "audience": "urn:bench", "algorithms": ["RS256"]}],
        "apis": [{"id": "bench", "listen_path": "/", "upstream": "http://127.0.0.1:9/",
                  "auth": {"type": "jwt", "identity_provider": "bench-idp",
                           "identity_claim": "client_id", "default_policies": ["bench"]}}],
        "policies": [{"id": "bench", "rate": {"requests": 1_000_000, "per_seconds": 1},
                      "access_rights": {"bench": {}}}],
    }


@contextlib.asynccontextmanager
async def hot_path(
    tokens: list[str], config: dict[str, Any], *, analytics: bool, serialise: bool
) -> AsyncIterator[Callable[[int], None]]:
    """A started gateway wired to in-memory transports; yields ``drive(n)`` (n requests)."""
    with tempfile.TemporaryDirectory() as tmp:
        # The benchmark's JWKS server listens on loopback: the SSRF guard must allow it.
        settings = GatewaySettings(port=0, data_dir=Path(tmp), analytics_enabled=analytics,
                                   outbound_allowed_networks=("127.0.0.0/8",))
        service = GatewayService(settings, parse_config(config))
        await service.start()
        try:
            server = service.server
            assert server is not None
            api = server.runtime.snapshot.route("/x")
            assert api is not None
            upstream = UpstreamConnection(api.upstream.key)
            upstream.connection_made(MemoryTransport())  # type: ignore[arg-type]
            server.pool.release(upstream, 0.0)
            client = server.protocol()
            client_transport = MemoryTransport()
            client.connection_made(client_transport)  # type: ignore[arg-type]
            heads = [
                f"GET /x HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {t}\r\n\r\n".encode()
                for t in tokens
            ]
            count = len(heads)
            buffer = service._analytics
            prepare = buffer._writer.prepare if buffer is not None and serialise else None
            pending = buffer._pending if buffer is not None else None

            def drive(requests: int) -> None:
                feed_client = client.data_received
                feed_upstream = upstream.data_received
                for i in range(requests):
                    feed_client(heads[i % count])
                    feed_upstream(RESPONSE)
                    if pending is not None and len(pending) >= FLUSH_EVERY:
                        batch = list(pending)
                        pending.clear()
                        if prepare is not None:
                            prepare(batch)

            drive(count)  # warm the verified-token and resolution caches
            yield drive
            assert client_transport.written > 0
            assert not client_transport.closing
        finally:
            await service.stop(grace=0.1)


async def measure(requests: int, tokens: list[str], config: dict[str, Any], *, analytics: bool,
                  serialise: bool, profile: bool = False) -> float:
    """µs per request for ``requests`` keep-alive requests over one client connection."""
    async with hot_path(tokens, config, analytics=analytics, serialise=serialise) as drive:
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        drive(requests)
        elapsed = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
            stats = pstats.Stats(profiler).sort_stats("tottime")
            stats.print_stats(30)
    return elapsed / requests * 1e6


def run(coro: Any) -> Any:
    """Run ``coro`` on uvloop, the loop the gateway runs on (its ``time()`` is C, asyncio's is not)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-analytics", action="store_true")
    parser.add_argument("--no-serialise", action="store_true",
                        help="leave the analytics serialisation out (the old measure)")
    parser.add_argument("--profile", action="store_true", help="cProfile one run, print the top")
    args = parser.parse_args()
    keys = generate_keys()
    analytics, serialise = not args.no_analytics, not args.no_serialise
    with jwks_server(keys) as issuer:
        tokens = mint_tokens(keys, issuer, 0, args.tokens)
        config = bench_config(issuer)
        if args.profile:
            run(measure(args.requests, tokens, config, analytics=analytics,
                                serialise=serialise, profile=True))
            return
        runs = [
            run(measure(args.requests, tokens, config, analytics=analytics,
                                serialise=serialise))
            for _ in range(args.runs)
        ]
    # The minimum is the least disturbed run: on a shared machine, noise only ever adds time.
    print(f"gateway Python per proxied request: best {min(runs):.1f} µs, median "
          f"{statistics.median(runs):.1f} µs over {args.runs} runs "
          f"({', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
