"""Reading and driving the portal's HTML pages in tests, without a browser.

:func:`parse` builds a small element tree with the standard library's ``html.parser`` (enough to
find elements by id, class or name); :class:`PortalBrowser` is an httpx client on the dashboard
app (ASGI, in-process) that keeps cookies like a browser and fills in each form's CSRF token from
the page that shows the form, as a browser submitting that form would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
from fastapi import FastAPI

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                  "track", "wbr"})


@dataclass
class Element:
    """An HTML element: tag, attributes and children (elements and text)."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        """The element's text, whitespace collapsed."""
        parts: list[str] = []

        def walk(node: Element) -> None:
            for child in node.children:
                if isinstance(child, str):
                    parts.append(child)
                else:
                    walk(child)

        walk(self)
        return " ".join("".join(parts).split())

    def iter(self) -> Iterator[Element]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def classes(self) -> list[str]:
        """The element's classes."""
        return self.attrs.get("class", "").split()


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    """The element tree of ``html``."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


@dataclass
class Page:
    """A response holding an HTML page."""

    response: httpx.Response
    root: Element

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self.response.status_code

    def by_id(self, ident: str) -> Element | None:
        """The element with id ``ident``."""
        return next((e for e in self.root.iter() if e.attrs.get("id") == ident), None)

    def text_of(self, ident: str) -> str:
        """The text of the element with id ``ident`` (it must exist)."""
        element = self.by_id(ident)
        assert element is not None, f"no #{ident} in the page:\n{self.response.text}"
        return element.text()

    def with_class(self, name: str) -> list[Element]:
        """The elements having class ``name``."""
        return [e for e in self.root.iter() if name in e.classes()]

    def named(self, name: str) -> list[Element]:
        """The form controls named ``name``."""
        return [e for e in self.root.iter() if e.attrs.get("name") == name]

    def value(self, name: str) -> str:
        """The value of the first control named ``name`` (a textarea's text, else ``value``)."""
        controls = self.named(name)
        assert controls, f"no control {name!r} in the page"
        control = controls[0]
        if control.tag == "textarea":
            return "".join(c for c in control.children if isinstance(c, str))
        return control.attrs.get("value", "")

    @property
    def csrf_token(self) -> str:
        """The CSRF token of the page's forms."""
        return self.value("csrf_token")

    def errors(self) -> list[str]:
        """The items of ``#errors``."""
        errors = self.by_id("errors")
        return [] if errors is None else [li.text() for li in errors.iter() if li.tag == "li"]

    def h1(self) -> str:
        """The page title."""
        return next(e.text() for e in self.root.iter() if e.tag == "h1")


def page(response: httpx.Response) -> Page:
    """``response`` as a :class:`Page`."""
    return Page(response, parse(response.text))


FormData = Mapping[str, str | Sequence[str]]


class PortalBrowser:
    """An HTTP client of the portal pages with a cookie jar (no redirects followed)."""

    def __init__(self, app: FastAPI, base_url: str = "http://dashboard.test") -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    async def aclose(self) -> None:
        """Close the client."""
        await self.http.aclose()

    async def get(self, path: str, **kwargs: Any) -> Page:
        """GET ``path`` as a page."""
        return page(await self.http.get(path, **kwargs))

    async def post(self, path: str, data: FormData, **kwargs: Any) -> Page:
        """POST ``data`` (URL-encoded, as given: no token added) to ``path``."""
        return page(await self.http.post(path, data=dict(data), **kwargs))

    async def submit(self, form_page: str, action: str, data: FormData, **kwargs: Any) -> Page:
        """Open ``form_page``, then POST ``data`` with that page's CSRF token to ``action``."""
        shown = await self.get(form_page)
        assert shown.status == 200, shown.response.text
        return await self.post(action, {"csrf_token": shown.csrf_token, **data}, **kwargs)

    async def sign_up(self, email: str, password: str, name: str = "Dev") -> Page:
        """Submit the sign-up form."""
        return await self.submit("/portal/signup", "/portal/signup",
                                 {"email": email, "name": name, "password": password})

    async def sign_in(self, email: str, password: str, **extra: str) -> Page:
        """Submit the sign-in form."""
        return await self.submit("/portal/login", "/portal/login",
                                 {"email": email, "password": password, **extra})

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` in the jar."""
        return next((c.value for c in self.http.cookies.jar if c.name == name), None)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """The ``Set-Cookie`` headers of ``response`` by cookie name."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name = re.split(r"[=;]", header, maxsplit=1)[0].strip()
        found[name] = header
    return found
