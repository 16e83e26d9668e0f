"""Gateways known to the dashboard: what each one last reported about itself.

Gateways post a heartbeat every few seconds and right after applying a configuration; the
dashboard keeps the latest report per node. :class:`NodeRegistry` is the narrow interface the
sync endpoints write to and the admin API (``/api/v1/gateways``) reads from;
:class:`MemoryNodeRegistry` serves the embedded mode and tests, and a SQL-backed registry can
implement the same protocol.
"""

from __future__ import annotations

import asyncio
import builtins
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class NodeReport:
    """One gateway's latest heartbeat, as received."""

    node_id: str
    """Stable name of the gateway process (default: its hostname)."""
    hostname: str
    """Host the gateway runs on."""
    pid: int
    """Process id on that host."""
    address: str
    """Where the gateway listens, ``host:port``."""
    config_version: int | None
    """Snapshot version in force; ``None`` before the first one."""
    started_at: float
    """When the gateway process started, Unix seconds."""
    last_seen: float
    """When the dashboard received this report, Unix seconds (dashboard clock)."""
    status: str
    """``ok``, ``degraded`` (serving, but something needs attention) or ``stopping``."""
    details: dict[str, Any] = field(default_factory=dict)
    """Free-form health details (last error, whether the config came from disk, …)."""


class NodeRegistry(Protocol):
    """Where heartbeats are kept."""

    async def report(self, node: NodeReport) -> None:
        """Record ``node`` as the latest report of ``node.node_id``."""
        ...

    async def list(self) -> builtins.list[NodeReport]:
        """Every known node's latest report, ordered by node id."""
        ...


class MemoryNodeRegistry:
    """Latest report per node, in process memory (lost on restart, which heartbeats repair)."""

    def __init__(self, *, max_nodes: int = 10_000) -> None:
        self._nodes: dict[str, NodeReport] = {}
        self._max_nodes = max_nodes
        self._lock = asyncio.Lock()

    async def report(self, node: NodeReport) -> None:
        """Keep ``node`` as its id's latest report; past ``max_nodes`` forget the stalest."""
        async with self._lock:
            self._nodes[node.node_id] = node
            if len(self._nodes) > self._max_nodes:
                # A fleet that churns node ids (autoscaling with random hostnames) must not grow
                # this without bound; the node silent for longest matters least.
                stalest = min(self._nodes.values(), key=lambda n: n.last_seen)
                del self._nodes[stalest.node_id]

    async def list(self) -> builtins.list[NodeReport]:
        """Every known node's latest report, ordered by node id."""
        async with self._lock:
            return [self._nodes[k] for k in sorted(self._nodes)]
