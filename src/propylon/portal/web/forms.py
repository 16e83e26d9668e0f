"""Reading the portal's HTML forms: text fields with limits, and the redirect-URI list.

Forms are parsed by hand rather than by FastAPI's parameter validation so that any garbage (a
missing field, a file instead of text, NUL or control characters, an over-long value) becomes a
precise problem on a re-rendered form, never a JSON error or a 500.
"""

from __future__ import annotations

import re

from starlette.datastructures import FormData
from starlette.requests import Request

from propylon.dashboard.errors import Problem

MAX_FIELDS = 200
"""More fields than any portal form has (the wizard's checkboxes included)."""
MAX_PART_BYTES = 256 * 1024
"""Largest single field of a multipart form (URL-encoded forms are capped by the body limit)."""

_RECORD_ID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")


class Form:
    """A submitted form; each read that finds a problem records it in :attr:`problems`."""

    def __init__(self, data: FormData) -> None:
        self._data = data
        self.problems: list[Problem] = []

    def raw(self, name: str) -> str | None:
        """The field as sent, if it is text (no checks; for the CSRF token)."""
        value = self._data.get(name)
        return value if isinstance(value, str) else None

    def text(self, name: str, label: str, *, max_length: int, required: bool = True,
             multiline: bool = False, strip: bool = True) -> str:
        """Field ``name`` as text ('' when missing or bad, with a problem recorded)."""
        values = self._data.getlist(name)
        if not values:
            if required:
                self.problems.append(Problem(name, f"{label} is required"))
            return ""
        value = values[0]
        if len(values) > 1 or not isinstance(value, str):
            self.problems.append(Problem(name, f"{label} must be given once, as text"))
            return ""
        if strip:
            value = value.strip()
        if required and not value:
            self.problems.append(Problem(name, f"{label} is required"))
        elif len(value) > max_length:
            self.problems.append(Problem(name, f"{label} must be at most {max_length} characters"))
            return ""
        elif (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value):
            self.problems.append(Problem(name, f"{label} must not contain control characters"))
            return ""
        return value

    def choices(self, name: str, label: str, *, max_count: int, max_length: int = 128) -> list[str]:
        """The values of a group of checkboxes (duplicates dropped)."""
        values = self._data.getlist(name)
        if len(values) > max_count:
            self.problems.append(Problem(name, f"choose at most {max_count}"))
            return []
        chosen: list[str] = []
        for value in values:
            if not isinstance(value, str) or len(value) > max_length or _CONTROL.search(value):
                self.problems.append(Problem(name, f"{label}: an unknown choice was sent"))
                return []
            if value not in chosen:
                chosen.append(value)
        return chosen


def plausible_id(value: str) -> bool:
    """Whether ``value`` can be the id of a stored record (a path segment); anything else is
    simply not found, without a database lookup."""
    return _RECORD_ID.match(value) is not None


async def read_form(request: Request) -> Form:
    """The request's form (URL-encoded or multipart; files are refused with 400 by Starlette)."""
    data = await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_PART_BYTES)
    return Form(data)


def split_redirect_uris(text: str, separator: str) -> list[str]:
    """The redirect URIs in a textarea: one per line, and also split by the portal settings'
    ``separator`` (Tyk's ``oauth_redirect_uri_separator``); blanks dropped."""
    uris: list[str] = []
    for line in text.splitlines():
        for part in line.split(separator) if separator else [line]:
            part = part.strip()
            if part:
                uris.append(part)
    return uris
