"""How busy the machine is *without* the benchmark: sampled while every server here is idle.

The benchmark shares the CPUs with whatever else runs (test suites, editors, builds). Before
each measured run it samples ``/proc/stat`` for a moment; a high figure means that run's
numbers are depressed by someone else and the table says so.
"""

from __future__ import annotations

import time
from pathlib import Path

_PROC_STAT = Path("/proc/stat")
BUSY_WARNING_PCT = 10.0


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies over all CPUs, or None where /proc/stat does not exist."""
    try:
        first = _PROC_STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return idle, sum(values[:8])  # guest time is already counted in user


def background_busy_pct(sample_s: float = 0.5) -> float | None:
    """Percentage of all CPUs busy during ``sample_s`` seconds (None if unknown)."""
    before = _cpu_times()
    time.sleep(sample_s)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    idle = after[0] - before[0]
    total = after[1] - before[1]
    return 100.0 * (1.0 - idle / total)
