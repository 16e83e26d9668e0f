"""Access rights: which methods and paths of one API a caller may use.

Path patterns are relative to the API's listen path and start with ``/``:

- a literal segment matches itself exactly (case-sensitive, no prefix matching: ``/items``
  matches neither ``/items/1`` nor ``/itemsx``);
- a ``*`` segment matches exactly one non-empty segment (``/items/*/tags`` matches
  ``/items/1/tags``);
- a trailing ``/*`` matches one or more segments below (``/items/*`` matches ``/items/1`` and
  ``/items/1/x``, but not ``/items``);
- ``*`` inside a segment (``/item*``) is refused when the matcher is built, as are ``.``, ``..``
  and empty segments: a pattern that cannot match a normalised path is a configuration mistake.

The request path is the normalised path relative to the listen path, without the query. One
trailing slash is ignored (``/items/`` is ``/items``) because upstreams almost always treat them
alike and operators do not write both; the empty path counts as ``/``. Wildcards never match
``.``, ``..`` or empty segments, so a path that somehow escaped normalisation cannot be widened
by a wildcard into a sibling resource.

Methods are compared exactly (HTTP methods are case-sensitive; the config upper-cases them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from propylon.domain.config import AccessRule, check_path_pattern

# A segment a wildcard may stand for: non-empty, and never a dot segment.
_SEGMENT = r"(?!\.\.?(?:/|\Z))[^/]+"

# Per method: True = every path, False = no path, a pattern = the paths it fully matches.
_PathCheck = re.Pattern[str] | bool


def _pattern_regex(pattern: str) -> str:
    """Translate one path pattern into a regex body (without the optional trailing slash).

    Raises ``ValueError`` for patterns no normalised path could match.
    """
    check_path_pattern(pattern)
    if pattern != "/" and pattern.endswith("/"):
        pattern = pattern[:-1]
    if pattern == "/":
        return ""
    segments = pattern[1:].split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "*":
            last = index == len(segments) - 1
            parts.append(f"(?:/{_SEGMENT})+" if last else f"/{_SEGMENT}")
        else:
            parts.append("/" + re.escape(segment))
    return "".join(parts)


def _compile(bodies: Sequence[str]) -> re.Pattern[str]:
    unique = dict.fromkeys(bodies)
    return re.compile("(?:" + "|".join(unique) + ")/?")


class AccessMatcher:
    """The union of access rules, compiled once; ``allows`` is a dict lookup plus one regex.

    An empty rule sequence allows nothing. A rule with no methods allows every method; a rule
    with no paths allows every path.
    """

    __slots__ = ("_by_method", "_other_methods", "rules")

    ALLOW_ALL: ClassVar[AccessMatcher]
    """A matcher with no restriction at all."""

    def __init__(self, rules: Sequence[AccessRule]) -> None:
        self.rules: tuple[AccessRule, ...] = tuple(rules)
        everything = False
        any_method: list[str] = []
        all_paths_for: set[str] = set()
        bodies_for: dict[str, list[str]] = {}
        for rule in self.rules:
            bodies = [_pattern_regex(p) for p in rule.paths]
            if not rule.methods:
                if bodies:
                    any_method.extend(bodies)
                else:
                    everything = True
                continue
            for method in rule.methods:
                if bodies:
                    bodies_for.setdefault(method, []).extend(bodies)
                else:
                    all_paths_for.add(method)

        self._other_methods: _PathCheck
        if everything:
            self._other_methods = True
        else:
            self._other_methods = _compile(any_method) if any_method else False
        self._by_method: dict[str, _PathCheck] = {}
        if not everything:
            for method in all_paths_for | bodies_for.keys():
                if method in all_paths_for:
                    self._by_method[method] = True
                else:
                    self._by_method[method] = _compile(bodies_for[method] + any_method)

    @classmethod
    def allow_all(cls) -> AccessMatcher:
        """Return the shared matcher that allows every method on every path."""
        return cls.ALLOW_ALL

    @property
    def unrestricted(self) -> bool:
        """True when every request is allowed, so a caller may skip the check entirely."""
        return self._other_methods is True

    def allows(self, method: str, path: str) -> bool:
        """Whether ``method`` on ``path`` (relative to the listen path) is allowed."""
        check = self._by_method.get(method, self._other_methods)
        if isinstance(check, bool):
            return check
        return check.fullmatch(path) is not None

    def __repr__(self) -> str:
        return f"AccessMatcher({list(self.rules)!r})"


AccessMatcher.ALLOW_ALL = AccessMatcher((AccessRule(),))
