"""What each gateway feature costs: the same gateway with features switched off, side by side.

``gateway.py`` compares Propylon with nginx and HAProxy. This script answers the next question
(where does Propylon's time go?) on the real process, under the same wrk load, by starting
several gateways that differ in one feature each and measuring them interleaved:

* ``full``      – JWT auth + rate limit + analytics (``gateway.py``'s ``propylon-1w``);
* ``no-analytics`` – the same with ``PROPYLON_ANALYTICS_ENABLED=false``;
* ``jwt-only``  – JWT auth, no rate limit, no analytics;
* ``keyless``   – no auth, no rate limit, no analytics: the proxy alone;
* ``floor``     – ``floor_proxy.py``, the bare Protocol/httptools/uvloop proxy (not Propylon);
* ``nginx``     – nginx as a plain keep-alive proxy (the baseline of the ratios).

Besides requests/s and p99 it reports **CPU time per request** of each configuration (user +
system time of its process group, read from ``/proc`` before and after each measured run,
divided by the requests served). On a 2-core machine that the load generator and the upstream
share, CPU per request moves much less between runs than requests/s does, and the differences
between rows are what each feature costs.

    .venv/bin/python benchmarks/features.py --propylon .venv-compiled/bin/propylon
    .venv/bin/python benchmarks/features.py --only nginx,full,floor --rounds 5 --duration 6

Loopback only; it starts its own nginx upstream and JWKS server and stops only what it started.
``--propylon-base PATH`` adds ``base``: the ``full`` configuration run by another build (e.g. an
earlier commit's compiled environment) in the same rounds, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchlib.processes import BenchError, require_tools
from benchlib.targets import (
    StartContext,
    Target,
    check_propylon_cli,
    propylon_config,
    start_floor,
    start_nginx_proxy,
    start_propylon,
    start_upstream,
)
from benchlib.tokens import generate_keys, jwks_server, mint_tokens
from benchlib.wrk import WrkSettings, run_wrk

CONFIGURATIONS = ("nginx", "full", "no-analytics", "jwt-only", "keyless", "floor")
DESCRIPTIONS = {
    "nginx": "nginx, plain keep-alive proxy",
    "full": "Propylon: JWT + rate limit + analytics",
    "base": "Propylon: JWT + rate limit + analytics, --propylon-base build",
    "no-analytics": "Propylon: JWT + rate limit",
    "jwt-only": "Propylon: JWT",
    "keyless": "Propylon: no auth, no limit, no analytics",
    "floor": "floor_proxy.py (not Propylon)",
}


def _process_group_cpu(pgid: int) -> float:
    """User + system seconds of every live process in ``pgid`` (the server and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def _gateway_config(context: StartContext, name: str) -> dict[str, Any]:
    config = propylon_config(context)
    if name in ("jwt-only", "keyless"):
        del config["policies"][0]["rate"]
    if name == "keyless":
        config["apis"][0]["auth"] = {"type": "keyless"}
        del config["identity_providers"]
    return config


def _start(name: str, context: StartContext, executables: dict[str, str]) -> Target:
    if name == "nginx":
        return start_nginx_proxy(context)
    if name == "floor":
        return start_floor(context)
    return start_propylon(
        context, 1, name=name, config=_gateway_config(context, name),
        executable=executables[name], analytics=name in ("full", "base"),
    )


def measure(
    targets: list[Target], settings: WrkSettings, token_file: Path, rounds: int, duration: float,
    log: Callable[[str], None],
) -> dict[str, list[tuple[float, float, float]]]:
    """(req/s, p99 ms, CPU µs per request) per round and configuration, order rotating."""
    results: dict[str, list[tuple[float, float, float]]] = {t.name: [] for t in targets}
    for round_index in range(rounds):
        shift = round_index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            run_wrk(settings, target.port, token_file, 1.0)  # warm-up
            pgid = target.process.pid
            before = _process_group_cpu(pgid)
            result = run_wrk(settings, target.port, token_file, duration)
            cpu_us = (_process_group_cpu(pgid) - before) / max(result.requests, 1) * 1e6
            if result.non_2xx or any(result.socket_errors.values()):
                raise BenchError(f"{target.name}: {result.non_2xx} non-2xx answers, "
                                 f"socket errors {result.socket_errors}")
            results[target.name].append((result.requests_per_s, result.p99_ms, cpu_us))
            log(f"round {round_index + 1}/{rounds} {target.name:13} "
                f"{result.requests_per_s:>9,.0f} req/s  p99 {result.p99_ms:.2f} ms  "
                f"CPU {cpu_us:.2f} µs/request")
    return results


def report(results: dict[str, list[tuple[float, float, float]]], rounds: int, duration: float) -> str:
    """A Markdown table of medians; ratios against nginx when it ran."""
    medians = {
        name: tuple(statistics.median(row[i] for row in rows) for i in range(3))
        for name, rows in results.items()
    }
    base = medians.get("nginx")
    lines = [
        f"Medians of {rounds} round(s) of {duration:g} s, wrk 1 thread × 50 connections.",
        "",
        "| configuration | req/s | p99 ms | CPU µs/request | req/s ÷ nginx | p99 ÷ nginx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (rps, p99, cpu) in medians.items():
        ratio = f"{rps / base[0]:.2f}×" if base else "–"
        p99_ratio = f"{p99 / base[1]:.2f}×" if base else "–"
        lines.append(f"| {name} ({DESCRIPTIONS[name]}) | {rps:,.0f} | {p99:.2f} | {cpu:.2f} "
                     f"| {ratio} | {p99_ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--propylon", help="the propylon executable (default: beside python)")
    parser.add_argument("--propylon-base", help="another build's propylon, run as 'base'")
    parser.add_argument("--only", help=f"comma-separated, of {', '.join(CONFIGURATIONS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=1000, help="distinct tokens")
    args = parser.parse_args()
    names = list(CONFIGURATIONS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(wanted) - set(CONFIGURATIONS)
        if unknown:
            parser.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
        names = [n for n in names if n in wanted]
    executable = check_propylon_cli(
        str(Path(args.propylon).resolve()) if args.propylon
        else str(Path(sys.executable).parent / "propylon")
    )
    executables = {name: executable for name in names}
    if args.propylon_base:
        names.insert(names.index("full") + 1 if "full" in names else len(names), "base")
        executables["base"] = check_propylon_cli(str(Path(args.propylon_base).resolve()))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        tools = require_tools(["wrk", "nginx"])
        workdir = Path(tempfile.mkdtemp(prefix="propylon-features-"))
        workdir.chmod(0o755)
        with ExitStack() as stack:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            keys = generate_keys()
            issuer = stack.enter_context(jwks_server(keys))
            tokens = mint_tokens(keys, issuer, 0, args.clients)
            token_file = workdir / "tokens.txt"
            token_file.write_text("\n".join(tokens) + "\n")
            upstream = start_upstream(tools, workdir, tokens[0])
            stack.callback(upstream.process.stop)
            context = StartContext(tools, workdir, upstream.port, issuer, keys.public_pem,
                                   tokens[0], executable)
            targets = []
            for name in names:
                log(f"starting {name} …")
                target = _start(name, context, executables)
                stack.callback(target.process.stop)
                targets.append(target)
            results = measure(targets, WrkSettings(tools["wrk"], 50, 1), token_file,
                              args.rounds, args.duration, log)
    except BenchError as exc:
        log(f"error: {exc}")
        return 2
    print(report(results, args.rounds, args.duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
