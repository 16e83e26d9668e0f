"""Routing by listen path, and the snapshot's memory of recent answers."""

from __future__ import annotations

from propylon.domain.config import parse_config
from propylon.gateway.chain import CompiledApi
from propylon.gateway.runtime import Snapshot
from tests.gateway.conftest import keyless_api


def _snapshot() -> Snapshot:
    config = parse_config({"apis": [
        keyless_api(9, id="root", listen_path="/"),
        keyless_api(9, id="a", listen_path="/a/"),
        keyless_api(9, id="ab", listen_path="/a/b/"),
        keyless_api(9, id="orders", listen_path="/orders/"),
    ]})
    routes = {}
    for api in config.apis:
        compiled = CompiledApi(api, [])
        routes[compiled.listen_path] = compiled
    return Snapshot(config, routes, "v1")


def _id(snapshot: Snapshot, path: str) -> str | None:
    api = snapshot.route(path)
    return api.id if api is not None else None


def test_remembered_answers_stay_those_of_the_longest_listen_path() -> None:
    snapshot = _snapshot()
    cases = {"/a/b/c": "ab", "/a/bc": "a", "/a/b": "ab", "/ax": "root", "/": "root",
             "/orders": "orders", "/orders/7": "orders", "/ordersx": "root"}
    for _ in range(3):  # later rounds are answered from memory, with equal but new strings too
        for path, expected in cases.items():
            assert _id(snapshot, "".join(list(path))) == expected
            assert _id(snapshot, path) == expected


def test_memory_is_bounded_and_unmatched_paths_are_not_kept() -> None:
    snapshot = _snapshot()
    for n in range(5000):
        assert _id(snapshot, f"/orders/{n}") == "orders"
    assert len(snapshot._routed) <= 4096
    del snapshot.routes["/"]
    assert _id(snapshot, "/nowhere") is None
    assert "/nowhere" not in snapshot._routed
