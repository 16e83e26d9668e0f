"""Request-target normalisation: done once, so what is routed and authorised is what is forwarded.

The rules (RFC 3986 §6.2.2 plus a few refusals):

* percent-encoded *unreserved* characters are decoded (``%7E`` → ``~``, ``%2e`` → ``.``), every
  other escape is kept with upper-case hex, so ``%2F`` stays an encoded slash and never becomes a
  path separator;
* bytes outside the RFC 3986 path character set are percent-encoded;
* empty segments are collapsed (``//`` → ``/``) and dot segments are resolved; a ``..`` that would
  climb above the root is refused (400) rather than silently clamped;
* NUL and control characters, a backslash (some upstreams treat it as ``/``), and malformed
  escapes are refused (400).
"""

from __future__ import annotations

import re
from typing import Final

from propylon.gateway.errors import BadRequest

_UNRESERVED: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCHAR: Final = _UNRESERVED | frozenset(b"!$&'()*+,;=:@")
# Anything that may need rewriting: escapes, dot segments, doubled slashes, odd bytes.
_NEEDS_WORK: Final = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@/]|//|/\.(?:/|\.|$)")
_HEX: Final = b"0123456789ABCDEF"


# Recent results: an API sees the same few paths again and again, and a dictionary lookup costs a
# fraction of the regex scan. Bounded by clearing and by path length, so a flood of distinct or
# long paths costs at most a few megabytes; refusals are never cached (they raise).
_CACHE_SIZE: Final = 4096
_CACHE_MAX_PATH: Final = 256
_cache: Final[dict[bytes, str]] = {}


def normalise_path(raw: bytes) -> str:
    """Return the normalised form of the path part of a request target, or raise BadRequest."""
    path = _cache.get(raw)
    if path is not None:
        return path
    if not raw.startswith(b"/"):
        raise BadRequest(reason="path_not_absolute")
    path = raw.decode("ascii") if _NEEDS_WORK.search(raw) is None else _rewrite(raw)
    # Only what can be a whole origin-form target without query or fragment is remembered, which
    # is what lets remembered_path() stand for the request-target check.
    if len(raw) <= _CACHE_MAX_PATH and raw.find(b"?") < 0 and raw.find(b"#") < 0:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[raw] = path
    return path


def remembered_path(target: bytes) -> str | None:
    """The normalised path of a request target seen recently, or ``None``.

    A target found here starts with ``/`` and has no query or fragment (nothing else is
    remembered), so it needs neither the URL parser nor a search for ``?`` and ``#``.
    """
    return _cache.get(target)


def _rewrite(raw: bytes) -> str:
    segments: list[str] = []
    for segment in raw.split(b"/")[1:]:
        text = _normalise_segment(segment)
        if text in ("", "."):
            continue
        if text == "..":
            if not segments:
                raise BadRequest(reason="path_above_root")
            segments.pop()
            continue
        segments.append(text)
    trailing = raw.endswith((b"/", b"/.", b"/..")) and bool(segments)
    return "/" + "/".join(segments) + ("/" if trailing else "")


def _normalise_segment(segment: bytes) -> str:
    out = bytearray()
    i, n = 0, len(segment)
    while i < n:
        byte = segment[i]
        if byte == 0x25:  # '%'
            pair = segment[i + 1 : i + 3].upper()
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise BadRequest(reason="bad_percent_escape")
            value = int(pair, 16)
            if value < 0x20 or value == 0x7F:
                raise BadRequest(reason="control_character_in_path")
            if value in _UNRESERVED:
                out.append(value)
            else:
                out += b"%" + pair
            i += 3
            continue
        if byte < 0x20 or byte == 0x7F or byte == 0x5C:  # controls and backslash
            raise BadRequest(reason="forbidden_character_in_path")
        if byte in _PCHAR:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
        i += 1
    return out.decode("ascii")
