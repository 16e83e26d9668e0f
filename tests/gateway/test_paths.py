"""normalise_path's memo: the same answers as without it, refusals never remembered."""

from __future__ import annotations

import pytest

from propylon.gateway import paths
from propylon.gateway.errors import BadRequest


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"/a/./b//c", "/a/b/c"), (b"/%7Eu/%2f", "/~u/%2F"), (b"/plain", "/plain")],
)
def test_a_remembered_path_gives_the_same_answer(raw: bytes, expected: str) -> None:
    paths._cache.clear()
    assert paths.normalise_path(raw) == expected
    assert raw in paths._cache
    assert paths.normalise_path(raw) == expected


def test_refusals_are_not_remembered() -> None:
    for _ in range(2):
        with pytest.raises(BadRequest):
            paths.normalise_path(b"/../etc")
    assert b"/../etc" not in paths._cache


def test_the_memo_is_bounded_in_entries_and_path_length() -> None:
    paths._cache.clear()
    long_path = b"/" + b"x" * (paths._CACHE_MAX_PATH + 1)
    assert paths.normalise_path(long_path) == long_path.decode()
    assert long_path not in paths._cache
    for index in range(paths._CACHE_SIZE + 10):
        paths.normalise_path(b"/p%d" % index)
    assert len(paths._cache) <= paths._CACHE_SIZE


def test_only_targets_without_query_or_fragment_are_remembered() -> None:
    # The front end takes a remembered target as origin-form without a query (server._exchange).
    paths._cache.clear()
    assert paths.normalise_path(b"/remembered/a") == "/remembered/a"
    assert paths.remembered_path(b"/remembered/a") == "/remembered/a"
    for raw in (b"/remembered/b?x=1", b"/remembered/c#top"):
        paths.normalise_path(raw)
        assert paths.remembered_path(raw) is None
