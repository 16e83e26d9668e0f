"""Instructions per proxied request on the hot path, counted by callgrind: a busy machine's noise
does not change them, so a change of a few per cent is visible in one run.

The parent process mints the tokens and serves the JWKS (outside valgrind); the child runs the
loop of ``hot_path.py`` (front end, chain, upstream protocol, analytics serialisation) under
``valgrind --tool=callgrind``. The child calls ``os.getppid()`` just before the measured requests
and ``os.getpgrp()`` just after; callgrind zeroes its counters at the first and dumps at the
second, so start-up, key fetching and the cache warm-up are not counted.

    .venv/bin/python benchmarks/instructions.py [--requests 2000] [--no-analytics]
    .venv-compiled/bin/python benchmarks/instructions.py      # the mypyc build

Instructions are not time (a cache miss costs more than an add), but on this code they track the
hot-path microseconds closely and are reproducible to well under 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.tokens import generate_keys, jwks_server, mint_tokens


def _child(spec_file: str) -> None:
    from hot_path import bench_config, hot_path
    from hot_path import run as run_on_uvloop

    spec = json.loads(Path(spec_file).read_text())

    async def run() -> None:
        async with hot_path(spec["tokens"], bench_config(spec["issuer"]),
                            analytics=spec["analytics"], serialise=spec["serialise"]) as drive:
            drive(spec["warmup"])
            os.getppid()  # callgrind: zero the counters
            drive(spec["requests"])
            os.getpgrp()  # callgrind: dump

    run_on_uvloop(run())


def _total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--no-analytics", action="store_true")
    parser.add_argument("--no-serialise", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the callgrind output, print its path")
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed: sudo apt-get install -y valgrind")
    keys = generate_keys()
    with jwks_server(keys) as issuer, tempfile.TemporaryDirectory() as tmp:
        spec = {
            "issuer": issuer, "tokens": mint_tokens(keys, issuer, 0, args.tokens),
            "requests": args.requests, "warmup": args.warmup,
            "analytics": not args.no_analytics, "serialise": not args.no_serialise,
        }
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--zero-before=os_getppid", "--dump-before=os_getpgrp",
             f"--callgrind-out-file={out}", sys.executable, __file__, "--child", str(spec_file)],
            check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        dumps = sorted(Path(tmp).glob("callgrind.out*"), key=lambda p: p.name)
        # The dump taken at os.getpgrp is the first numbered one; the last is the exit's.
        parts = [p for p in dumps if re.search(r"\.\d+$", p.name)]
        measured = min(parts, key=lambda p: int(p.name.rsplit(".", 1)[1])) if parts else dumps[0]
        total = _total(measured)
        if args.keep:
            kept = Path(tempfile.gettempdir()) / f"callgrind.hot_path.{os.getpid()}"
            shutil.copy(measured, kept)
            print(f"callgrind output: {kept}")
    print(f"instructions per proxied request: {total / args.requests:,.0f} "
          f"({args.requests} requests, {sys.executable})")


if __name__ == "__main__":
    main()
