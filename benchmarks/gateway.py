"""Benchmark Propylon's gateway against nginx and HAProxy on loopback, side by side, with wrk.

Configurations (see benchmarks/README.md for why each is set up the way it is):

* ``upstream``     – the upstream nginx, hit directly (the ceiling of this machine);
* ``nginx``        – nginx as a plain keep-alive reverse proxy (the baseline of the ratios);
* ``haproxy``      – HAProxy verifying the same RS256 JWT on every request (``jwt_verify``);
* ``propylon-1w``  – ``propylon gateway`` with JWT auth, a rate limit that never triggers and
  analytics, one worker; ``propylon-2w`` – the same with two workers;
* ``floor``        – ``floor_proxy.py``, the bare Protocol/httptools/uvloop proxy with a token dict
  and none of Propylon's features: what the design costs before any feature (not a product).

Every request carries one of ``--clients`` distinct RS256 tokens (wrk rotates through them with
``templates/rotate-tokens.lua``). Configurations are interleaved round by round and the median of
``--rounds`` is reported. A second, separate measurement sends tokens Propylon has never seen
(each used once) to show the first-use, uncached cost.

Usage::

    .venv/bin/python benchmarks/gateway.py                      # everything, ~3 min
    .venv/bin/python benchmarks/gateway.py --skip-propylon --duration 3 --rounds 1

Results: a Markdown table on stdout and JSON in ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from benchlib.fresh import run_bounded
from benchlib.load import background_busy_pct
from benchlib.processes import BenchError, require_tools
from benchlib.report import (
    FreshRow,
    Round,
    Summary,
    add_ratios,
    first_use_cost_us,
    fresh_table,
    markdown_table,
    write_json,
)
from benchlib.targets import (
    ALL_TARGETS,
    PROPYLON_TARGETS,
    StartContext,
    Target,
    analytics_lines,
    check_propylon_cli,
    check_target,
    start_target,
    start_upstream,
)
from benchlib.tokens import BenchKeys, generate_keys, invalid_tokens, jwks_server, mint_tokens
from benchlib.wrk import WrkSettings, run_wrk

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Propylon against nginx and HAProxy on loopback with wrk.",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--only", help=f"comma-separated configurations to run (of {', '.join(ALL_TARGETS)})")
    parser.add_argument("--skip-propylon", action="store_true", help="leave out propylon-*")
    parser.add_argument("--clients", type=int, default=1000, help="distinct tokens for wrk")
    parser.add_argument(
        "--first-use-tokens",
        type=int,
        default=10_000,
        help="fresh tokens per Propylon configuration for the first-use run (0 skips it)",
    )
    parser.add_argument("--propylon", help="the propylon executable (default: next to python)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--keep-temp", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)
    _validate(parser, args)
    return args


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.duration < 1 or args.rounds < 1 or args.clients < 1 or args.threads < 1:
        parser.error("--duration, --rounds, --clients and --threads must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    if args.warmup < 0 or args.first_use_tokens < 0:
        parser.error("--warmup and --first-use-tokens cannot be negative")


def selected_targets(args: argparse.Namespace) -> list[str]:
    """The configurations to run, in the canonical order."""
    names = list(ALL_TARGETS)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - set(ALL_TARGETS)
        if unknown:
            raise BenchError(
                f"unknown configuration(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_TARGETS)}"
            )
        names = [name for name in names if name in wanted]
    if args.skip_propylon:
        names = [name for name in names if name not in PROPYLON_TARGETS]
    if not names:
        raise BenchError("no configuration left to run")
    return names


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _propylon_executable(args: argparse.Namespace) -> str | None:
    if args.propylon:
        # Absolute: the servers run with their own temporary directories as working directory.
        given = Path(args.propylon)
        return str(given.resolve()) if given.parent != Path() else str(given)
    beside_python = Path(sys.executable).parent / "propylon"
    return str(beside_python) if beside_python.exists() else shutil.which("propylon")


def _tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unknown ({exc})"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _write_tokens(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join(tokens) + "\n")
    return path


def _handle_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def start_all(names: list[str], context: StartContext, upstream: Target, stack: ExitStack) -> list[Target]:
    """Start the selected configurations (the upstream is already running)."""
    targets = []
    for name in names:
        if name == "upstream":
            targets.append(upstream)
            continue
        log(f"starting {name} …")
        target = start_target(name, context)
        stack.callback(target.process.stop)
        targets.append(target)
    return targets


def check_all(targets: list[Target], valid_token: str, invalid: dict[str, str]) -> None:
    """Correctness first: fatal failures raise, the rest become notes in the table."""
    for target in targets:
        target.check_warnings = check_target(target, valid_token, invalid)
        verdict = "ok" if not target.check_warnings else "; ".join(target.check_warnings)
        checked = "valid→200"
        if target.authenticates:
            checked += f", no token→401, {len(invalid)} invalid tokens→401"
        log(f"check {target.name}: {checked}: {verdict}")


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f}%"


def measure(
    targets: list[Target], settings: WrkSettings, token_file: Path, args: argparse.Namespace
) -> dict[str, list[Round]]:
    """Load sample + warm-up + measured run per configuration, rotating the order each round."""
    results: dict[str, list[Round]] = {target.name: [] for target in targets}
    for round_index in range(args.rounds):
        shift = round_index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            busy = background_busy_pct()
            if args.warmup > 0:
                run_wrk(settings, target.port, token_file, args.warmup)
            result = run_wrk(settings, target.port, token_file, args.duration)
            results[target.name].append(Round(result, busy))
            log(
                f"round {round_index + 1}/{args.rounds} {target.name:12} "
                f"{result.requests_per_s:>10,.0f} req/s  p50 {result.p50_ms:.2f} ms  "
                f"p99 {result.p99_ms:.2f} ms  non-2xx {result.non_2xx}  "
                f"(machine busy before: {_pct(busy)})"
            )
    return results


def measure_first_use(
    targets: list[Target],
    fresh_tokens: dict[str, list[str]],
    cached_tokens: list[str],
    count: int,
    connections: int,
) -> list[FreshRow]:
    """Fresh tokens (each used once) vs the cached set, with the same bounded client."""
    rows: list[FreshRow] = []
    if count == 0:
        return rows
    repeated = [cached_tokens[i % len(cached_tokens)] for i in range(count)]
    for target in sorted(targets, key=lambda t: t.name == "haproxy"):  # reference row last
        if target.name in fresh_tokens:
            tokens = fresh_tokens[target.name]
            result = run_bounded(target.port, tokens, connections)
            rows.append(FreshRow(target.name, "fresh", f"{len(tokens):,} fresh, each used once", result))
            log(f"first use {target.name}: {result.requests_per_s:,.0f} req/s")
            result = run_bounded(target.port, repeated, connections)
            rows.append(FreshRow(target.name, "cached", f"{len(cached_tokens):,} cached, rotating", result))
        elif target.name == "haproxy":
            result = run_bounded(target.port, repeated, connections)
            rows.append(
                FreshRow(
                    target.name,
                    "no cache",
                    f"{len(cached_tokens):,} rotating (every request verified)",
                    result,
                )
            )
    return rows


def _first_use_costs(rows: list[FreshRow]) -> dict[str, float | None]:
    """Per Propylon configuration: extra µs per request for a first-use token."""
    fresh = {row.name: row.result for row in rows if row.kind == "fresh"}
    cached = {row.name: row.result for row in rows if row.kind == "cached"}
    return {name: first_use_cost_us(fresh[name], cached[name]) for name in fresh if name in cached}


def build_summaries(targets: list[Target], results: dict[str, list[Round]]) -> list[Summary]:
    summaries = []
    for target in targets:
        summary = Summary(
            target.name,
            target.description,
            results[target.name],
            warnings=list(target.check_warnings),
        )
        if target.analytics_path is not None:
            summary.analytics_lines = analytics_lines(target)
            if not summary.analytics_lines:
                summary.warnings.append(f"WARNING: no analytics in {target.analytics_path.name}")
        summaries.append(summary)
    add_ratios(summaries)
    return summaries


def print_report(
    summaries: list[Summary],
    rows: list[FreshRow],
    costs: dict[str, float | None],
    args: argparse.Namespace,
) -> None:
    print(
        f"\n## Cached path: median of {args.rounds} round(s), {args.duration:g}s each, "
        f"wrk {args.threads} thread(s) × {args.connections} connections, "
        f"{args.clients:,} distinct RS256 tokens\n"
    )
    print(markdown_table(summaries))
    if rows:
        print(f"\n## First use: bounded asyncio client, {args.connections} connections\n")
        print(fresh_table(rows))
        for name, cost in costs.items():
            if cost is not None:
                print(
                    f"\n{name}: a first-use token costs ≈ {cost:,.0f} µs more per request "
                    "(1/fresh rate − 1/cached rate, at saturation)."
                )
    print(f"\nJSON: {args.json}")


def _payload(
    args: argparse.Namespace,
    tools: dict[str, str],
    summaries: list[Summary],
    rows: list[FreshRow],
    costs: dict[str, float | None],
) -> dict[str, Any]:
    versions = {
        "nginx": _tool_version([tools["nginx"], "-v"]),
        "wrk": _tool_version([tools["wrk"], "--version"]),
    }
    if "haproxy" in tools:
        versions["haproxy"] = _tool_version([tools["haproxy"], "-v"])
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "tools": versions,
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": args.threads,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "first_use_tokens": args.first_use_tokens,
        },
        "baseline": "nginx",
        "configurations": [s.to_json() for s in summaries if s.rounds],
        "first_use": [row.to_json() for row in rows],
        "first_use_cost_us": costs,
    }


def run(args: argparse.Namespace) -> int:
    names = selected_targets(args)
    needed = ["wrk", "nginx"] + (["haproxy"] if "haproxy" in names else [])
    tools = require_tools(needed)
    wants_propylon = [name for name in names if name in PROPYLON_TARGETS]
    executable = check_propylon_cli(_propylon_executable(args)) if wants_propylon else None
    workdir = Path(tempfile.mkdtemp(prefix="propylon-bench-"))
    workdir.chmod(0o755)  # nginx workers may run as another user when started as root
    with ExitStack() as stack:
        if not args.keep_temp:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        else:
            log(f"temp dir (kept): {workdir}")
        keys = generate_keys()
        issuer = stack.enter_context(jwks_server(keys))
        log(f"minting {args.clients:,} tokens (JWKS at {issuer}/jwks) …")
        cached_tokens = mint_tokens(keys, issuer, 0, args.clients)
        fresh = _mint_fresh(keys, issuer, wants_propylon, args)
        token_file = _write_tokens(workdir / "tokens.txt", cached_tokens)
        upstream = start_upstream(tools, workdir, cached_tokens[0])
        stack.callback(upstream.process.stop)
        context = StartContext(
            tools, workdir, upstream.port, issuer, keys.public_pem, cached_tokens[0], executable
        )
        targets = start_all(names, context, upstream, stack)
        check_all(targets, cached_tokens[-1], invalid_tokens(keys, issuer))
        settings = WrkSettings(tools["wrk"], args.connections, args.threads)
        results = measure(targets, settings, token_file, args)
        rows = measure_first_use(targets, fresh, cached_tokens, args.first_use_tokens, args.connections)
        for target in targets:
            target.process.stop()  # lets Propylon flush analytics before they are counted
        summaries = build_summaries(targets, results)
    costs = _first_use_costs(rows)
    write_json(args.json, _payload(args, tools, summaries, rows, costs))
    print_report(summaries, rows, costs, args)
    return 0


def _mint_fresh(
    keys: BenchKeys, issuer: str, propylon_names: list[str], args: argparse.Namespace
) -> dict[str, list[str]]:
    """A separate, never-used token set per Propylon configuration for the first-use run."""
    fresh: dict[str, list[str]] = {}
    count = args.first_use_tokens
    for index, name in enumerate(propylon_names if count else []):
        log(f"minting {count:,} first-use tokens for {name} …")
        fresh[name] = mint_tokens(keys, issuer, args.clients + index * count, count)
    return fresh


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _handle_sigterm)
    try:
        return run(args)
    except BenchError as exc:
        log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; stopped everything this run started")
        return 130


if __name__ == "__main__":
    sys.exit(main())
