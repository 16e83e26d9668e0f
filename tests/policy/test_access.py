"""Access-rule matching: glob semantics, no prefix matching, methods, unions."""

from __future__ import annotations

import pytest

from propylon.domain.config import AccessRule
from propylon.policy.access import AccessMatcher


def matcher(*paths: str, methods: tuple[str, ...] = ()) -> AccessMatcher:
    return AccessMatcher([AccessRule(methods=methods, paths=paths)])


@pytest.mark.parametrize(
    ("pattern", "path", "allowed"),
    [
        # exact literal, no prefix matching
        ("/items", "/items", True),
        ("/items", "/items/", True),  # one trailing slash is ignored
        ("/items", "/items//", False),
        ("/items", "/items/1", False),
        ("/items", "/itemsx", False),
        ("/items", "/item", False),
        ("/items", "/Items", False),
        ("/items", "/x/items", False),
        ("/items/", "/items", True),  # a pattern's trailing slash is ignored too
        # trailing wildcard: one or more segments below
        ("/items/*", "/items/1", True),
        ("/items/*", "/items/1/x", True),
        ("/items/*", "/items/1/x/", True),
        ("/items/*", "/items", False),
        ("/items/*", "/items/", False),
        ("/items/*", "/itemsx", False),
        ("/items/*", "/itemsx/1", False),
        ("/items/*", "/items//1", False),
        # wildcards never stand for dot segments
        ("/items/*", "/items/..", False),
        ("/items/*", "/items/../admin", False),
        ("/items/*", "/items/./x", False),
        ("/items/*", "/items/1/..", False),
        ("/items/*", "/items/..x", True),  # a name starting with dots is an ordinary segment
        ("/items/*", "/items/.hidden", True),
        # inner wildcard: exactly one non-empty segment
        ("/items/*/tags", "/items/1/tags", True),
        ("/items/*/tags", "/items/1/tags/", True),
        ("/items/*/tags", "/items/tags", False),
        ("/items/*/tags", "/items//tags", False),
        ("/items/*/tags", "/items/1/2/tags", False),
        ("/items/*/tags", "/items/1/tags/x", False),
        ("/items/*/tags", "/items/../tags", False),
        # root
        ("/", "/", True),
        ("/", "", True),
        ("/", "/x", False),
        ("/*", "/x", True),
        ("/*", "/x/y", True),
        ("/*", "/", False),
        # regex metacharacters in literals are literal
        ("/a.b", "/a.b", True),
        ("/a.b", "/axb", False),
        ("/a+b", "/aab", False),
        ("/v1/(x)", "/v1/(x)", True),
    ],
)
def test_path_patterns(pattern: str, path: str, allowed: bool) -> None:
    assert matcher(pattern).allows("GET", path) is allowed


@pytest.mark.parametrize("pattern", ["/item*", "/a/*b/c", "/a//b", "/a/../b", "/a/./b", "//"])
def test_patterns_no_normalised_path_could_match_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        matcher(pattern)


def test_empty_paths_allow_every_path() -> None:
    m = matcher(methods=("GET",))
    assert m.allows("GET", "/anything/at/all")
    assert not m.allows("POST", "/anything")


def test_empty_methods_allow_every_method() -> None:
    m = matcher("/items")
    for method in ("GET", "POST", "DELETE", "PATCH", "BREW"):
        assert m.allows(method, "/items")
    assert not m.allows("GET", "/other")


def test_methods_are_case_sensitive() -> None:
    m = matcher("/items", methods=("GET",))
    assert m.allows("GET", "/items")
    assert not m.allows("get", "/items")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/items/1", True),  # rule 1
        ("POST", "/items/1", False),  # rule 1 is GET only, rule 2 is another path
        ("POST", "/orders", True),  # rule 2
        ("DELETE", "/orders", False),
        ("GET", "/orders", True),  # rule 1
        ("PUT", "/health", True),  # rule 3: any method
        ("PUT", "/health/x", False),
    ],
)
def test_rules_are_a_union(method: str, path: str, allowed: bool) -> None:
    m = AccessMatcher(
        [
            AccessRule(methods=("GET",), paths=("/items/*", "/orders")),
            AccessRule(methods=("POST",), paths=("/orders",)),
            AccessRule(paths=("/health",)),
        ]
    )
    assert m.allows(method, path) is allowed


def test_method_rule_also_sees_any_method_paths() -> None:
    m = AccessMatcher([AccessRule(methods=("GET",), paths=("/a",)), AccessRule(paths=("/b",))])
    assert m.allows("GET", "/b")
    assert m.allows("GET", "/a")
    assert not m.allows("POST", "/a")


def test_rule_without_restriction_wins_the_union() -> None:
    m = AccessMatcher([AccessRule(methods=("GET",), paths=("/a",)), AccessRule()])
    assert m.unrestricted
    assert m.allows("DELETE", "/zzz")


def test_method_with_all_paths_beats_its_narrower_rule() -> None:
    m = AccessMatcher([AccessRule(methods=("GET",), paths=("/a",)), AccessRule(methods=("GET",))])
    assert m.allows("GET", "/zzz")
    assert not m.allows("POST", "/a")
    assert not m.unrestricted


def test_no_rules_allow_nothing() -> None:
    m = AccessMatcher([])
    assert not m.allows("GET", "/")
    assert not m.unrestricted


def test_allow_all() -> None:
    assert AccessMatcher.allow_all() is AccessMatcher.ALLOW_ALL
    assert AccessMatcher.ALLOW_ALL.unrestricted
    assert AccessMatcher.ALLOW_ALL.allows("PATCH", "/x/../y")
