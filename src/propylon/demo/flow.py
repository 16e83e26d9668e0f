"""``propylon demo``: the seeded flow, run headlessly against a running ``propylon up``.

Each step prints what it did and whether the platform behaved as it should: a developer signs up
on the portal, gets a developer API token, registers an OAuth client through the portal's
developer API (dynamic client registration at the IdP), gets an access token from the IdP's token
endpoint, calls the API through the gateway (200), goes past the rate limit (429 with its headers),
deletes the client, and sees the same token refused. The exit status is 0 only if every step
behaved as expected.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from propylon.demo import seed

PROPAGATION_SECONDS = 10.0
"""How long a configuration change may take to reach the gateway before a step fails."""

_CSRF_FIELD = re.compile(r'name="csrf_token"\s+value="([^"]+)"|value="([^"]+)"\s+name="csrf_token"')


class StepFailed(Exception):
    """A step did not behave as expected; ``str()`` says what happened instead."""


@dataclass
class DemoState:
    """What the steps hand to each other."""

    dashboard_url: str
    gateway_url: str
    email: str = ""
    password: str = ""
    developer_token: str = ""
    record_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    token_endpoint: str = ""
    access_token: str = ""
    api_path: str = seed.LISTEN_PATH
    scope: str | None = None
    notes: list[str] = field(default_factory=list)


def _csrf(page: str) -> str:
    found = _CSRF_FIELD.search(page)
    if found is None:
        raise StepFailed("the portal page has no CSRF token field")
    return found.group(1) or found.group(2)


async def sign_up(state: DemoState, portal: httpx.AsyncClient) -> str:
    """Sign up on the portal's web form (as a browser would, CSRF token included)."""
    state.email = f"demo-{secrets.token_hex(4)}@example.com"
    state.password = secrets.token_urlsafe(16)
    form = await portal.get("/portal/signup")
    if form.status_code != 200:
        raise StepFailed(f"GET /portal/signup answered {form.status_code}")
    response = await portal.post("/portal/signup", data={
        "email": state.email, "name": "Demo Script", "password": state.password,
        "csrf_token": _csrf(form.text)})
    if response.status_code != 303:
        raise StepFailed(f"sign-up answered {response.status_code}: {response.text[:300]}")
    return f"signed up as {state.email}"


async def developer_token(state: DemoState, portal: httpx.AsyncClient) -> str:
    """Create a developer API token with the new account's email and password."""
    response = await portal.post("/portal/api/v1/tokens", json={"name": "propylon demo"},
                                 auth=(state.email, state.password))
    if response.status_code != 201:
        raise StepFailed(f"creating a developer API token answered {response.status_code}: "
                         f"{response.text[:300]} (does the portal require admin approval?)")
    state.developer_token = response.json()["token"]
    return "developer API token created"


async def register_client(state: DemoState, portal: httpx.AsyncClient) -> str:
    """Register an OAuth client for the demo catalogue entry (DCR at the IdP)."""
    headers = {"Authorization": f"Bearer {state.developer_token}"}
    catalogue = await portal.get("/portal/api/v1/catalogue", headers=headers)
    if catalogue.status_code != 200:
        raise StepFailed(f"the catalogue answered {catalogue.status_code}")
    entries: list[dict[str, Any]] = catalogue.json()
    entry = next((item for item in entries if item["id"] == seed.ENTRY_ID), None)
    if entry is None:
        raise StepFailed(f"the catalogue has no entry {seed.ENTRY_ID!r}; was the demo seeded?")
    if entry["apis"]:
        state.api_path = entry["apis"][0]["listen_path"]
    response = await portal.post("/portal/api/v1/clients", headers={
        **headers, "Idempotency-Key": secrets.token_hex(8)}, json={
        "catalogue_entry_ids": [seed.ENTRY_ID], "name": "propylon demo client"})
    if response.status_code != 201:
        raise StepFailed(f"registration answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    state.record_id, state.client_id = body["id"], body["client_id"]
    state.client_secret, state.token_endpoint = body["client_secret"] or "", body["token_endpoint"] or ""
    if not state.client_secret or not state.token_endpoint:
        raise StepFailed("the registration returned no client secret or token endpoint")
    return f"client {state.client_id} registered at the IdP"


async def get_token(state: DemoState, idp: httpx.AsyncClient) -> str:
    """client_credentials at the IdP's token endpoint."""
    response = await idp.post(state.token_endpoint, data={"grant_type": "client_credentials"},
                              auth=(state.client_id, state.client_secret))
    if response.status_code != 200 or "access_token" not in response.json():
        raise StepFailed(f"the token endpoint answered {response.status_code}: {response.text[:300]}")
    state.access_token = response.json()["access_token"]
    return f"access token issued ({response.json().get('token_type', 'Bearer')}, expires in " \
           f"{response.json().get('expires_in', '?')} s)"


async def _call(state: DemoState, gateway: httpx.AsyncClient) -> httpx.Response:
    return await gateway.get(f"{state.api_path}hello",
                             headers={"Authorization": f"Bearer {state.access_token}"})


async def _until(predicate: Callable[[httpx.Response], bool], state: DemoState,
                 gateway: httpx.AsyncClient) -> httpx.Response:
    """Call until ``predicate`` holds or the propagation time is up (the last answer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROPAGATION_SECONDS
    while True:
        response = await _call(state, gateway)
        if predicate(response) or loop.time() >= deadline:
            return response
        await asyncio.sleep(0.25)


async def call_api(state: DemoState, gateway: httpx.AsyncClient) -> str:
    """The first call through the gateway: 200 once the gateway knows the new client."""
    response = await _until(lambda r: r.status_code == 200, state, gateway)
    if response.status_code != 200:
        raise StepFailed(f"GET {state.api_path}hello answered {response.status_code}: "
                         f"{response.text[:300]}")
    return f"GET {state.api_path}hello -> 200 (RateLimit: {response.headers.get('ratelimit', '-')})"


async def exceed_rate_limit(state: DemoState, gateway: httpx.AsyncClient) -> str:
    """Call until 429; it must carry Retry-After and the RateLimit headers."""
    for attempt in range(1, 200):
        response = await _call(state, gateway)
        if response.status_code == 429:
            missing = [name for name in ("retry-after", "ratelimit", "ratelimit-policy",
                                         "x-ratelimit-limit") if name not in response.headers]
            if missing:
                raise StepFailed(f"429 without {', '.join(missing)}")
            return (f"call {attempt + 1} -> 429, Retry-After: {response.headers['retry-after']}, "
                    f"RateLimit-Policy: {response.headers['ratelimit-policy']}")
        if response.status_code != 200:
            raise StepFailed(f"call {attempt + 1} answered {response.status_code}, not 200 or 429")
    raise StepFailed("200 calls without a 429: is the policy's rate limit in place?")


async def delete_client(state: DemoState, portal: httpx.AsyncClient) -> str:
    """Delete the client: revoked at the gateway, deleted at the IdP."""
    response = await portal.delete(f"/portal/api/v1/clients/{state.record_id}",
                                   headers={"Authorization": f"Bearer {state.developer_token}"})
    if response.status_code not in (200, 202):
        raise StepFailed(f"deletion answered {response.status_code}: {response.text[:300]}")
    return f"client deleted ({response.json().get('status', response.status_code)})"


async def token_refused(state: DemoState, gateway: httpx.AsyncClient) -> str:
    """The deleted client's token, still a valid JWT, is refused by the gateway: 403."""
    response = await _until(lambda r: r.status_code == 403, state, gateway)
    if response.status_code != 403:
        raise StepFailed(f"the deleted client's token still gets {response.status_code}")
    return f"GET {state.api_path}hello -> {response.status_code} (token refused)"


async def run_demo(dashboard_url: str, gateway_url: str, out: TextIO) -> int:
    """Run every step, printing each; 0 if all behaved as expected, else 1."""
    state = DemoState(dashboard_url.rstrip("/"), gateway_url.rstrip("/"))
    async with httpx.AsyncClient(base_url=state.dashboard_url, trust_env=False, timeout=20.0) as portal, \
            httpx.AsyncClient(trust_env=False, timeout=20.0) as idp, \
            httpx.AsyncClient(base_url=state.gateway_url, trust_env=False, timeout=20.0) as gateway:
        steps: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("developer signs up on the portal", lambda: sign_up(state, portal)),
            ("developer gets a developer API token", lambda: developer_token(state, portal)),
            ("developer registers an OAuth client (DCR)", lambda: register_client(state, portal)),
            ("client gets an access token from the IdP", lambda: get_token(state, idp)),
            ("client calls the API through the gateway", lambda: call_api(state, gateway)),
            ("client exceeds the rate limit", lambda: exceed_rate_limit(state, gateway)),
            ("developer deletes the client", lambda: delete_client(state, portal)),
            ("the gateway refuses the old token", lambda: token_refused(state, gateway)),
        ]
        for number, (title, step) in enumerate(steps, 1):
            out.write(f"{number}. {title} … ")
            out.flush()
            try:
                result = await step()
            except StepFailed as exc:
                out.write(f"FAILED\n   {exc}\n")
                return 1
            except httpx.HTTPError as exc:
                out.write(f"FAILED\n   {type(exc).__name__}: {exc} (is `propylon up` running?)\n")
                return 1
            out.write(f"ok\n   {result}\n")
    out.write("\nEvery step behaved as expected.\n")
    return 0
