"""Running wrk with the token-rotating Lua script and parsing what it prints.

wrk's ``--latency`` report looks like::

      Latency Distribution
         50%  612.00us
         75%    1.02ms
         90%    1.50ms
         99%    3.81ms
      123456 requests in 10.00s, 15.31MB read
      Non-2xx or 3xx responses: 12
    Requests/sec:  12345.67

(wrk counts any status >= 400 as "Non-2xx or 3xx"; the table calls it non-2xx.)
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchlib.processes import TEMPLATES, BenchError

LUA_SCRIPT = TEMPLATES / "rotate-tokens.lua"
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class WrkResult:
    """One wrk run; latencies in milliseconds."""

    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def to_ms(value: str, unit: str) -> float:
    """A wrk time (``612.00`` ``us``) in milliseconds."""
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk_output(text: str) -> WrkResult:
    """The numbers of one ``wrk --latency`` report; BenchError if the report is incomplete."""
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    percentiles = {int(p): to_ms(v, u) for p, v, u in _PERCENTILE.findall(text)}
    if rps is None or total is None or not {50, 75, 90, 99} <= percentiles.keys():
        raise BenchError(f"could not parse wrk output (was --latency given?):\n{text}")
    non_2xx = _NON_2XX.search(text)
    socket = _SOCKET.search(text)
    names = ("connect", "read", "write", "timeout")
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=to_ms(total.group(2), total.group(3)) / 1000.0,
        requests_per_s=float(rps.group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(names, map(int, socket.groups()), strict=True))
        if socket
        else dict.fromkeys(names, 0),
    )


@dataclass(frozen=True)
class WrkSettings:
    """How hard wrk pushes: the same for every configuration."""

    executable: str
    connections: int
    threads: int
    timeout_s: float = 5.0


def run_wrk(settings: WrkSettings, port: int, token_file: Path, duration_s: float) -> WrkResult:
    """One wrk run against ``http://127.0.0.1:<port>/`` rotating through ``token_file``."""
    argv = [
        settings.executable,
        f"--threads={settings.threads}",
        f"--connections={settings.connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={settings.timeout_s:g}s",
        "--latency",
        f"--script={LUA_SCRIPT}",
        f"http://127.0.0.1:{port}/",
        "--",
        str(token_file),
    ]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if completed.returncode != 0:
        raise BenchError(
            f"wrk failed with status {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        )
    return parse_wrk_output(completed.stdout)
