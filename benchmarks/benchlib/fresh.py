"""A bounded asyncio HTTP/1.1 client for the first-use (uncached token) measurement.

wrk runs for a fixed time and cannot stop after exactly N requests while still reporting a
correct rate, so this client sends each token of a list exactly once over ``connections``
keep-alive connections (raw sockets, no HTTP library) and times the whole batch. It is slower
than wrk, so only compare its numbers with each other: the report pairs every first-use run
with a run of the same client over already-cached tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class ClientResult:
    """One bounded run; latencies in milliseconds."""

    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Tally:
    latencies_s: list[float] = field(default_factory=list)
    non_2xx: int = 0
    errors: int = 0


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    return status, headers


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return
        await reader.readexactly(size + 2)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the connection stays open."""
    status, headers = _parse_head(await reader.readuntil(_HEAD_END))
    if "chunked" in headers.get("transfer-encoding", ""):
        await _skip_chunked(reader)
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close"


def _request_bytes(port: int, token: str) -> bytes:
    return (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode(
        "ascii"
    )


async def _connection_loop(port: int, tokens: Iterator[str], tally: _Tally) -> None:
    """Send tokens from the shared iterator one by one, reconnecting when the server closes."""
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    for token in tokens:
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(_request_bytes(port, token))
            status, keep_alive = await _read_response(reader)
            tally.latencies_s.append(time.perf_counter() - started)
            tally.non_2xx += not 200 <= status < 300
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            tally.errors += 1
            keep_alive = False
        if not keep_alive and writer is not None:
            writer.close()
            writer, reader = None, None
    if writer is not None:
        writer.close()


async def _run(port: int, tokens: Sequence[str], connections: int) -> ClientResult:
    tally = _Tally()
    shared = iter(tokens)
    started = time.perf_counter()
    loops = [_connection_loop(port, shared, tally) for _ in range(connections)]
    await asyncio.gather(*loops)
    elapsed = time.perf_counter() - started
    latencies = sorted(tally.latencies_s)
    return ClientResult(
        requests=len(latencies),
        duration_s=elapsed,
        requests_per_s=len(latencies) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        non_2xx=tally.non_2xx,
        errors=tally.errors,
    )


def run_bounded(port: int, tokens: Sequence[str], connections: int) -> ClientResult:
    """Send every token in ``tokens`` exactly once to ``http://127.0.0.1:<port>/``."""
    return asyncio.run(_run(port, tokens, connections))
