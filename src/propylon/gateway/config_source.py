"""The declarative gateway file: reading it, and watching it for changes.

``load_config_file`` turns a YAML or JSON file into a validated :class:`GatewayConfig`. Every way
the file can be wrong (unreadable, not UTF-8, a syntax error, a duplicate key, a top level that is
not a mapping, any number of validation problems) comes out as one :class:`ConfigError` whose
``problems`` list all of them; no ``yaml``/``json``/``OSError`` exception escapes as such.
Problem locations are field paths (``apis.0.upstream``) or ``line L, column C`` for syntax errors,
never prefixed with the file name: the caller prints the path once.

``ConfigWatcher`` polls the file and hands each new valid configuration to a callback. A file that
is invalid, unreadable or missing never replaces the configuration in force: the gateway keeps
serving with the last good one and the problems go to the log.

Files are read synchronously, on the event loop. That is deliberate: a gateway file is a few
kilobytes (and capped at :data:`MAX_CONFIG_BYTES`), reading and validating it takes well under a
millisecond, and a reload happens only when the file changes; a thread hop would cost more than it
saves and would make the order of reloads harder to reason about.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import yaml

from propylon.domain.config import ConfigError, ConfigProblem, GatewayConfig, parse_config

logger = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""Largest accepted file. Far above any real configuration; it only keeps a wrong path (a log
file, a device) from being read into memory on the event loop."""

_YAML_SUFFIXES = frozenset({".yaml", ".yml"})
_JSON_SUFFIXES = frozenset({".json"})
_YAML_MERGE_TAG = "tag:yaml.org,2002:merge"

# A file modified this recently may still be being written within the same mtime tick, so its
# unchanged stat() is not proof of unchanged content (git calls this "racily clean").
_RACY_WINDOW_NS = 2_000_000_000


def load_config_file(path: Path) -> GatewayConfig:
    """Read, decode and validate the gateway file at ``path``.

    ``.yaml``/``.yml`` files are read as YAML (safe loader: plain data only), ``.json`` files as
    JSON; any other suffix is refused. Raises :class:`ConfigError` listing every problem found.
    """
    return _parse(path, _read(path))


def _problem(message: str, location: str = "") -> ConfigError:
    return ConfigError([ConfigProblem(location, message)])


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _YAML_SUFFIXES | _JSON_SUFFIXES:
        raise _problem(
            f"unsupported file type {path.suffix or '(none)'!r}; use .yaml, .yml or .json"
        )
    return suffix


def _read(path: Path) -> bytes:
    # Refuse the suffix before opening anything: there is no point reading a file we cannot parse.
    _check_suffix(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise _problem(f"cannot read the file: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise _problem(f"the file is larger than {MAX_CONFIG_BYTES} bytes")
    return raw


def _parse(path: Path, raw: bytes) -> GatewayConfig:
    suffix = _check_suffix(path)
    try:
        # utf-8-sig: editors on Windows like to prepend a byte-order mark.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _problem(f"the file is not valid UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise _problem("the file is empty")

    duplicates: list[ConfigProblem] = []
    decode = _decode_yaml if suffix in _YAML_SUFFIXES else _decode_json
    data = decode(text, duplicates)
    if data is None:
        # A YAML file holding only comments, or a literal `null`: nothing was configured.
        raise _problem("the file is empty")
    if not isinstance(data, dict):
        raise _problem(f"the top level must be a mapping of settings, not {_kind(data)}")
    try:
        config = parse_config(data)
    except ConfigError as exc:
        if not duplicates:
            raise
        raise ConfigError([*duplicates, *exc.problems]) from exc
    if duplicates:
        raise ConfigError(duplicates)
    return config


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _line_column(line: int, column: int) -> str:
    return f"line {line}, column {column}"


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, but recording duplicate mapping keys.

    Plain YAML keeps the last of two equal keys silently, so a second ``apis:`` block would
    quietly replace the first; an operator must hear about that.
    """

    duplicates: list[ConfigProblem]

    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            # Keys pulled in by a `<<` merge may legitimately be overridden; only explicit
            # keys of this mapping count.
            if key_node.tag == _YAML_MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                is_duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it properly
            if is_duplicate:
                mark = key_node.start_mark
                self.duplicates.append(
                    ConfigProblem(
                        _line_column(mark.line + 1, mark.column + 1), f"duplicate key {key!r}"
                    )
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _decode_yaml(text: str, duplicates: list[ConfigProblem]) -> Any:
    loader: _StrictLoader | None = None
    try:
        # Inside the try: the reader already rejects control characters while being built.
        loader = _StrictLoader(text)
        loader.duplicates = duplicates
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if exc.context and exc.problem:
            what = f"{exc.problem} ({exc.context})"
        location = _line_column(mark.line + 1, mark.column + 1) if mark else ""
        raise _problem(f"invalid YAML: {what}", location) from exc
    except yaml.reader.ReaderError as exc:
        position = int(exc.position)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        raise _problem(f"invalid YAML: {exc.reason}", _line_column(line, column)) from exc
    except yaml.YAMLError as exc:
        raise _problem(f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise _problem("invalid YAML: nested too deeply") from exc
    finally:
        if loader is not None:
            loader.dispose()


def _decode_json(text: str, duplicates: list[ConfigProblem]) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json keeps the last of two equal keys silently; report it like YAML does.
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                duplicates.append(ConfigProblem("", f"duplicate key {key!r}"))
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise _problem(f"invalid JSON: {exc.msg}", _line_column(exc.lineno, exc.colno)) from exc
    except RecursionError as exc:
        raise _problem("invalid JSON: nested too deeply") from exc


_Fingerprint = tuple[int, int, int, int]


def _fingerprint(stat: os.stat_result) -> _Fingerprint:
    # The inode and device catch an atomic rename (or a Kubernetes ConfigMap symlink swap) even
    # when size and mtime happen to match.
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev)


class ConfigWatcher:
    """Reload the gateway file when it changes, keeping the last good configuration otherwise.

    The file's current content is taken to be the configuration already in force: load it with
    :func:`load_config_file`, apply it, then create the watcher. ``on_change`` is then called, on
    the event loop's thread, with each new valid configuration and never with an invalid one.

    Change detection is cheap: a ``stat()`` per poll (mtime, size, inode). Only when that differs
    is the file read, and it is reloaded only if its SHA-256 differs from the content in force, so
    ``touch`` or an editor rewriting identical bytes changes nothing.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[GatewayConfig], None],
        *,
        interval: float = 1.0,
    ) -> None:
        if not interval > 0:
            raise ValueError("interval must be positive")
        self.path = path
        self.interval = interval
        self._on_change = on_change
        self._seen: _Fingerprint | None = None  # stat of the content last examined
        self._applied: bytes | None = None  # digest of the content in force
        self._reported: tuple[bytes | None, tuple[str, ...]] | None = None  # last logged failure
        self._missing = False
        self._take_baseline()

    def _take_baseline(self) -> None:
        try:
            stat = os.stat(self.path)
            raw = _read(self.path)
            _parse(self.path, raw)
        except (OSError, ConfigError):
            # The caller could not have loaded it either, so nothing from this file is in
            # force: the first valid content the watcher sees will be applied.
            return
        self._seen = _fingerprint(stat)
        self._applied = hashlib.sha256(raw).digest()

    async def run(self) -> None:
        """Poll the file every ``interval`` seconds until cancelled; never raises otherwise."""
        while True:
            try:
                self._check(force=False)
            except Exception:
                # A bug here must not stop the gateway from ever reloading again.
                logger.exception("unexpected error while watching %s", self.path)
            await asyncio.sleep(self.interval)

    def reload_now(self) -> bool:
        """Re-read the file at once (the SIGHUP handler); return whether a new config was applied.

        Must run on the event loop's thread (``loop.add_signal_handler`` does that). Never raises.
        """
        try:
            return self._check(force=True)
        except Exception:
            logger.exception("unexpected error while reloading %s", self.path)
            return False

    def _check(self, *, force: bool) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing:
                logger.error(
                    "config file %s has disappeared; keeping the current configuration", self.path
                )
                self._missing = True
            self._seen = None
            return False
        except OSError as exc:
            problem = ConfigProblem("", f"cannot read the file: {exc.strerror or exc}")
            self._report(None, [problem], force=force)
            return False
        if self._missing:
            logger.warning("config file %s is back", self.path)
            self._missing = False

        fingerprint = _fingerprint(stat)
        racy = time.time_ns() - stat.st_mtime_ns < _RACY_WINDOW_NS
        if fingerprint == self._seen and not racy and not force:
            return False
        try:
            raw = _read(self.path)
        except ConfigError as exc:
            self._report(None, exc.problems, force=force)
            return False
        self._seen = fingerprint
        digest = hashlib.sha256(raw).digest()
        if digest == self._applied:
            if force:
                logger.info("config file %s is unchanged; nothing to reload", self.path)
            self._reported = None
            return False
        if not force and self._reported is not None and self._reported[0] == digest:
            return False  # this exact content was already tried and refused
        try:
            config = _parse(self.path, raw)
        except ConfigError as exc:
            self._report(digest, exc.problems, force=force)
            return False
        try:
            self._on_change(config)
        except Exception:
            logger.exception(
                "applying the new configuration from %s failed; keeping the current one", self.path
            )
            self._reported = (digest, ("on_change failed",))
            return False
        self._applied = digest
        self._reported = None
        logger.info(
            "applied the configuration from %s (version %s)", self.path, config.version or "-"
        )
        return True

    def _report(self, digest: bytes | None, problems: list[ConfigProblem], *, force: bool) -> None:
        key = (digest, tuple(str(p) for p in problems))
        # A bad file stays bad until edited: say so once, not on every poll.
        if key == self._reported and not force:
            return
        self._reported = key
        for problem in problems:
            logger.error("%s: %s", self.path, problem)
        logger.error(
            "config file %s rejected (%d problem%s); keeping the current configuration",
            self.path,
            len(problems),
            "" if len(problems) == 1 else "s",
        )
