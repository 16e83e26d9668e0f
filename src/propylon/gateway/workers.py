"""``--workers N``: N gateway processes sharing one port through SO_REUSEPORT, supervised.

The kernel spreads new connections across the processes. The parent only supervises: it forwards
SIGTERM/SIGINT (graceful stop) and SIGHUP (reload) to every worker, and restarts a worker that
died unexpectedly, with a short back-off so a crash loop does not spin.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import time
from types import FrameType

from propylon.gateway.service import run_gateway
from propylon.logs import configure_logging
from propylon.settings import GatewaySettings

log = logging.getLogger(__name__)

_RESTART_BACKOFF = 1.0


def _worker_main(settings: GatewaySettings, index: int, log_level: str) -> None:
    configure_logging(log_level)
    run_gateway(settings, reuse_port=True, worker_index=index)


def run_workers(settings: GatewaySettings, *, log_level: str = "INFO") -> int:
    """Run ``settings.workers`` gateway processes until signalled; returns an exit code."""
    if settings.workers == 1:
        run_gateway(settings)
        return 0
    if settings.port == 0:
        raise ValueError("--workers > 1 needs a fixed --port (the workers share it)")
    ctx = multiprocessing.get_context("spawn")
    workers: dict[int, multiprocessing.process.BaseProcess] = {}
    stopping = False

    def spawn(index: int) -> None:
        proc = ctx.Process(
            target=_worker_main, args=(settings, index, log_level), name=f"propylon-worker-{index}"
        )
        proc.start()
        workers[index] = proc

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            signum = signal.SIGTERM
        for proc in workers.values():
            if proc.pid is not None and proc.is_alive():
                _signal(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGUSR1, forward)
    for index in range(settings.workers):
        spawn(index)
    log.info("started %d gateway workers on port %d", settings.workers, settings.port)
    while True:
        for index, proc in list(workers.items()):
            proc.join(timeout=0.2)
            if proc.is_alive():
                continue
            if stopping:
                del workers[index]
                continue
            log.error("worker %d exited with code %s; restarting", index, proc.exitcode)
            time.sleep(_RESTART_BACKOFF)
            spawn(index)
        if stopping and not workers:
            return 0


def _signal(pid: int, signum: int) -> None:
    # The worker may have exited between the liveness check and the signal.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
