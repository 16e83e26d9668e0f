"""Medians over rounds, ratios to nginx, the Markdown tables and the JSON file.

Ratios are relative to the ``nginx`` row: ``req/s ÷ nginx`` above 1 means faster than nginx,
``p99 ÷ nginx`` above 1 means a slower tail than nginx.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib.fresh import ClientResult
from benchlib.load import BUSY_WARNING_PCT
from benchlib.wrk import WrkResult

BASELINE = "nginx"


@dataclass(frozen=True)
class Round:
    """One measured wrk run and how busy the machine was just before it (other processes)."""

    result: WrkResult
    background_busy_pct: float | None

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "background_busy_pct": self.background_busy_pct}


@dataclass
class Summary:
    """One configuration over all rounds (medians of each metric taken separately)."""

    name: str
    description: str
    rounds: list[Round]
    warnings: list[str] = field(default_factory=list)
    analytics_lines: int | None = None
    rps_ratio: float | None = None
    p99_ratio: float | None = None

    @property
    def requests_per_s(self) -> float:
        return statistics.median(r.result.requests_per_s for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.result.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.result.p99_ms for r in self.rounds)

    @property
    def non_2xx(self) -> int:
        return sum(r.result.non_2xx for r in self.rounds)

    @property
    def socket_errors(self) -> int:
        return sum(r.result.socket_error_total for r in self.rounds)

    @property
    def background_busy_pct(self) -> float | None:
        """The highest background CPU load seen before this configuration's rounds."""
        samples = [r.background_busy_pct for r in self.rounds if r.background_busy_pct is not None]
        return max(samples) if samples else None

    def notes(self) -> list[str]:
        notes = list(self.warnings)
        busy = self.background_busy_pct
        if busy is not None and busy > BUSY_WARNING_PCT:
            notes.append(f"machine {busy:.0f}% busy with other work before a round")
        if self.non_2xx:
            notes.insert(0, f"WARNING: {self.non_2xx} non-2xx responses in measured runs")
        if self.socket_errors:
            notes.insert(0, f"WARNING: {self.socket_errors} socket errors in measured runs")
        return notes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "requests_per_s": self.requests_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "rps_ratio_to_nginx": self.rps_ratio,
            "p99_ratio_to_nginx": self.p99_ratio,
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "analytics_lines": self.analytics_lines,
            "max_background_busy_pct": self.background_busy_pct,
            "notes": self.notes(),
            "rounds": [r.to_json() for r in self.rounds],
        }


@dataclass(frozen=True)
class FreshRow:
    """One bounded-client run: first-use tokens, cached tokens, or a proxy without a cache."""

    name: str
    kind: str  # "fresh", "cached" or "no cache"
    tokens: str
    result: ClientResult

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "tokens": self.tokens,
            **self.result.to_json(),
        }


def add_ratios(summaries: list[Summary]) -> None:
    """Fill in the ratios to the nginx row (left as None when nginx was not measured)."""
    baseline = next((s for s in summaries if s.name == BASELINE and s.rounds), None)
    if baseline is None:
        return
    for summary in summaries:
        if summary.rounds:
            summary.rps_ratio = summary.requests_per_s / baseline.requests_per_s
            summary.p99_ratio = summary.p99_ms / baseline.p99_ms


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def markdown_table(summaries: list[Summary]) -> str:
    """The main table: medians, ratios to nginx, error counts and notes."""
    lines = [
        "| configuration | req/s | p50 ms | p99 ms | req/s ÷ nginx | p99 ÷ nginx "
        "| non-2xx | socket errors | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        if not s.rounds:
            continue
        lines.append(
            f"| {s.name} ({s.description}) | {s.requests_per_s:,.0f} | {_ms(s.p50_ms)} "
            f"| {_ms(s.p99_ms)} | {_ratio(s.rps_ratio)} | {_ratio(s.p99_ratio)} "
            f"| {s.non_2xx} | {s.socket_errors} | {'; '.join(s.notes()) or ''} |"
        )
    return "\n".join(lines)


def fresh_table(rows: list[FreshRow]) -> str:
    """The first-use table: the same bounded client over fresh vs cached tokens."""
    lines = [
        "| configuration | tokens | requests | req/s | p50 ms | p99 ms | non-2xx | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = row.result
        lines.append(
            f"| {row.name} | {row.tokens} | {r.requests:,} | {r.requests_per_s:,.0f} "
            f"| {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {r.non_2xx} | {r.errors} |"
        )
    return "\n".join(lines)


def first_use_cost_us(fresh: ClientResult, cached: ClientResult) -> float | None:
    """Extra gateway time per request when the token is new, from the two saturated rates."""
    if fresh.requests_per_s <= 0 or cached.requests_per_s <= 0:
        return None
    return (1 / fresh.requests_per_s - 1 / cached.requests_per_s) * 1e6


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
