"""System calls per proxied request of a loaded gateway, counted with ``strace -f -c``.

Starts the upstream nginx, the JWKS server and one Propylon worker (JWT, rate limit, analytics:
the configuration of ``gateway.py``), drives it with wrk on loopback and attaches strace to the
gateway for the measured run. strace slows the gateway several-fold, so the request rate is
meaningless here, and with more connections ready per wake-up the epoll count per request is an
underestimate; the reads and writes per request are exact.

    .venv/bin/python benchmarks/syscalls.py [--propylon .venv-compiled/bin/propylon] [--duration 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.processes import require_tools
from benchlib.targets import StartContext, start_propylon, start_upstream
from benchlib.tokens import generate_keys, jwks_server, mint_tokens
from benchlib.wrk import WrkSettings, run_wrk

_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--propylon", default=shutil.which("propylon") or ".venv/bin/propylon")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    tools = require_tools(["nginx", "wrk", "strace"])
    keys = generate_keys()
    with ExitStack() as stack, jwks_server(keys) as issuer:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        tokens = mint_tokens(keys, issuer, 0, 200)
        token_file = workdir / "tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n")
        upstream = start_upstream(tools, workdir, tokens[0])
        stack.callback(upstream.process.stop)
        context = StartContext(tools, workdir, upstream.port, issuer, keys.public_pem, tokens[0],
                               os.path.abspath(args.propylon))
        gateway = start_propylon(context, workers=1)
        stack.callback(gateway.process.stop)
        settings = WrkSettings(tools["wrk"], args.connections, 1)
        run_wrk(settings, gateway.port, token_file, 2)  # warm the token caches
        out = workdir / "strace.txt"
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(gateway.process.pid)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        result = run_wrk(settings, gateway.port, token_file, args.duration)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        counts: dict[str, int] = {}
        for line in out.read_text().splitlines():
            match = _LINE.match(line)
            if match and match.group(3) != "total":
                counts[match.group(3)] = int(match.group(1))
    requests = result.requests
    print(f"{requests} requests under strace ({result.non_2xx} non-2xx), {args.propylon}")
    for name, calls in sorted(counts.items(), key=lambda kv: -kv[1]):
        if calls / requests >= 0.01:
            print(f"  {name:<16} {calls / requests:6.2f} per request")
    print(f"  {'all':<16} {sum(counts.values()) / requests:6.2f} per request")


if __name__ == "__main__":
    main()
