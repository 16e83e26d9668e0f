"""The developer portal in a real browser (Chromium via Playwright), against real processes: the
npm ``oidc-provider``, ``propylon dashboard``, ``propylon gateway --dashboard`` and the echo
upstream (``conftest.py``).

The core flow (DESIGN.md §1): sign up → log in → the wizard registers a client at the IdP → the
credentials page's curl commands, run exactly as shown, get a token from the IdP and call the API
through the gateway → the client is deleted in the browser → the gateway refuses the same token.
Then: the portal without JavaScript, CSRF refusals, and sign-ups awaiting an admin's approval.
Every step leaves a screenshot in ``test-artifacts/screenshots/<test name>/``.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Response

from tests.browser.conftest import API_PATH, ENTRY_ID, PORTAL_NAME, Stack
from tests.browser.curl import CurlAnswer, run_shown
from tests.support.browser import Steps

# "browser" first: without Chromium the tests skip before the processes start.
pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.usefixtures("browser")]

PASSWORD = "browser developer password 42"
REVOCATION_LIMIT = 5.0
"""Seconds within which a deleted client's token must be refused by the gateway (the dashboard's
changes reach gateways within 2 s)."""
_emails = itertools.count(1)


def new_email(label: str) -> str:
    """A developer address no other test of this module (one stack) uses."""
    return f"{label}-{next(_emails)}@example.com"


def submit(form: Locator) -> Response:
    """Click ``form``'s submit button as a user would and return the response of the page it leads
    to (after redirects)."""
    page = form.page
    button = form.locator("button:not([type=button]):not([type=reset]), input[type=submit]").first
    with page.expect_navigation() as navigation:
        button.click()
    response = navigation.value
    assert response is not None
    return response


def form_with(page: Page, field: str) -> Locator:
    """The one form on ``page`` with an input named ``field``."""
    return page.locator("form", has=page.locator(f"[name={field}]"))


def path_of(page: Page) -> str:
    """The current URL without the origin."""
    url = page.url
    return url[url.index("/", len("http://")):]


def sign_up(stack: Stack, steps: Steps, page: Page, email: str) -> None:
    """Home → sign-up form → the login page with its #flash."""
    home = page.goto(stack.url("/portal/"))
    assert home is not None
    assert home.status == 200
    assert PORTAL_NAME in page.content()
    steps.shot(page, "home")
    with page.expect_navigation():
        page.locator("a[href$='/signup']").first.click()
    assert path_of(page) == "/portal/signup"
    form = form_with(page, "password")
    assert form.locator("input[name=csrf_token]").count() == 1
    form.locator("[name=email]").fill(email)
    form.locator("[name=name]").fill("Browser Developer")
    form.locator("[name=password]").fill(PASSWORD)
    steps.shot(page, "sign up form")
    response = submit(form)
    assert response.status == 200
    assert path_of(page) == "/portal/login?signed_up=1"
    assert page.locator("#flash").is_visible()
    steps.shot(page, "signed up")


def log_in(stack: Stack, steps: Steps, page: Page, email: str, *, status: int = 200) -> Response:
    """Fill and send the login form; the answer's status must be ``status``."""
    if not path_of(page).startswith("/portal/login"):
        page.goto(stack.url("/portal/login"))
    form = form_with(page, "password")
    form.locator("[name=email]").fill(email)
    form.locator("[name=password]").fill(PASSWORD)
    steps.shot(page, "login form")
    response = submit(form)
    assert response.status == status, page.content()
    steps.shot(page, "logged in" if status == 200 else f"login refused {status}")
    if status == 200:
        assert path_of(page) == "/portal/clients"
    return response


def register_client(steps: Steps, page: Page, name: str) -> tuple[Response, dict[str, Any]]:
    """The wizard from the clients list: tick the entry, name it, keep client_credentials,
    #register; returns the credentials page's response and what it shows."""
    with page.expect_navigation():
        page.locator("#new-client").click()
    assert path_of(page) == "/portal/clients/new"
    form = form_with(page, "catalogue_entry_ids")
    assert form.locator("input[name=csrf_token]").count() == 1
    assert form.locator("input[type=hidden][name=idempotency_key]").count() == 1
    assert form.locator("textarea[name=redirect_uris]").count() == 1
    assert form.locator("select[name=grant_type]").input_value() == "client_credentials"
    form.locator(f"input[name=catalogue_entry_ids][value='{ENTRY_ID}']").check()
    form.locator("[name=name]").fill(name)
    steps.shot(page, "wizard filled")
    with page.expect_navigation() as navigation:
        page.locator("#register").click()
    response = navigation.value
    assert response is not None
    steps.shot(page, "credentials")
    assert response.status == 200, page.content()
    shown = {
        "client_id": page.locator("#client-id").inner_text().strip(),
        "client_secret": page.locator("#client-secret").inner_text().strip(),
        "token_endpoint": page.locator("#token-endpoint").inner_text().strip(),
        "curl_token": page.locator("#curl-token").inner_text().strip(),
        "curl_call": [text.strip() for text in page.locator("pre.curl-call").all_inner_texts()],
    }
    return response, shown


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the gateway is the one that verifies it)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def call_until(command: str, curl_home: Path, statuses: set[int], limit: float,
               **variables: str) -> tuple[CurlAnswer, float]:
    """Run the shown API call until it answers one of ``statuses`` (the gateway learns of a change
    within a moment, not at once); returns the answer and how long it took."""
    start = time.monotonic()
    while True:
        answer = run_shown(command, curl_home, **variables)
        elapsed = time.monotonic() - start
        if answer.status in statuses or elapsed > limit:
            return answer, elapsed
        time.sleep(0.1)


def test_sign_up_register_call_the_api_and_delete_the_client(
    stack: Stack, steps: Steps, tmp_path: Path
) -> None:
    page = steps.page()
    email = new_email("flow")
    sign_up(stack, steps, page, email)
    log_in(stack, steps, page, email)
    (session,) = [cookie for cookie in page.context.cookies() if cookie["name"] == "propylon_portal"]
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Lax", "/portal")
    assert page.locator(".client-row").count() == 0
    clients_page = page.url

    # The catalogue tells the developer what they can register for, limits in words.
    page.goto(stack.url("/portal/catalogue"))
    (entry,) = page.locator(".catalogue-entry").all()
    described = entry.inner_text()
    for expected in ("Orders", "Order data for partners", API_PATH, "at most 100 requests per second"):
        assert expected in described
    steps.shot(page, "catalogue")
    page.goto(clients_page)
    response, shown = register_client(steps, page, "orders-app")

    assert "no-store" in (response.header_value("cache-control") or "")
    assert shown["client_id"]
    assert shown["client_secret"]
    assert shown["token_endpoint"] == f"{stack.idp.issuer}/token"
    assert shown["client_id"] in shown["curl_token"]
    assert shown["token_endpoint"] in shown["curl_token"]
    assert len(shown["curl_call"]) == 1
    (call,) = shown["curl_call"]
    gateway_url = stack.gateway if stack.gateway_url_in_settings else "$GATEWAY_URL"
    assert f"{gateway_url}{API_PATH}" in call
    assert "$ACCESS_TOKEN" in call

    # The commands, exactly as shown: a token from the real IdP, then the API through the gateway.
    curl_home = tmp_path / "curl"
    token_answer = run_shown(shown["curl_token"], curl_home)
    assert token_answer.status == 200, token_answer.body
    access_token = json.loads(token_answer.body)["access_token"]
    assert claims(access_token)["client_id"] == shown["client_id"]
    assert claims(access_token)["aud"] == stack.idp.resource
    variables = {"ACCESS_TOKEN": access_token, "GATEWAY_URL": stack.gateway}
    served, _ = call_until(call, curl_home, {200}, REVOCATION_LIMIT, **variables)
    assert served.status == 200, served.body
    echoed = json.loads(served.body)  # the echo upstream's description of the request it got
    assert (echoed["method"], echoed["path"]) == ("GET", "/")
    assert echoed["headers"]["authorization"] == f"Bearer {access_token}"

    # The list and the detail page show the client, never the secret again.
    page.goto(stack.url("/portal/clients"))
    rows = page.locator(".client-row")
    assert rows.count() == 1
    assert "orders-app" in rows.first.inner_text()
    steps.shot(page, "client list")
    with page.expect_navigation():
        rows.first.locator("a").first.click()
    assert page.locator("#client-id").inner_text().strip() == shown["client_id"]
    assert shown["client_secret"] not in page.content()
    steps.shot(page, "client detail")
    detail = path_of(page)

    # Delete in the browser: the gateway refuses the same token within a few seconds.
    with page.expect_navigation():
        page.locator("a[href$='/delete']").first.click()
    assert path_of(page) == f"{detail}/delete"
    steps.shot(page, "confirm delete")
    with page.expect_navigation() as navigation:
        page.locator("#confirm-delete").click()
    assert navigation.value is not None
    assert navigation.value.status == 200
    assert path_of(page) == "/portal/clients"
    assert page.locator("#flash").is_visible()
    assert page.locator(".client-row").count() == 0
    steps.shot(page, "deleted")
    refused, elapsed = call_until(call, curl_home, {401, 403}, REVOCATION_LIMIT, **variables)
    assert refused.status in {401, 403}, (refused.status, refused.body)
    assert elapsed <= REVOCATION_LIMIT
    # The IdP no longer knows the client either.
    assert run_shown(shown["curl_token"], curl_home).status == 401
    gone = page.goto(stack.url(detail))
    assert gone is not None
    assert gone.status == 404
    steps.shot(page, "deleted client detail")


def test_the_portal_works_without_javascript(stack: Stack, steps: Steps) -> None:
    page = steps.page(javascript=False)
    # The context really runs no script: an inline one leaves the title alone.
    page.set_content("<title>before</title><script>document.title = 'script ran'</script>")
    assert page.title() == "before"
    email = new_email("nojs")
    sign_up(stack, steps, page, email)
    log_in(stack, steps, page, email)
    response, shown = register_client(steps, page, "plain-html-app")
    assert "no-store" in (response.header_value("cache-control") or "")
    assert shown["client_id"]
    assert shown["client_secret"]
    assert shown["curl_token"].startswith("curl ")


def test_forms_without_their_csrf_token_are_refused(stack: Stack, steps: Steps) -> None:
    page = steps.page()
    # An anonymous form (sign-up) sent without the token creates nobody.
    page.goto(stack.url("/portal/signup"))
    steps.shot(page, "sign up form")
    email = new_email("csrf")
    forged = page.request.post(stack.url("/portal/signup"), max_redirects=0,
                               form={"email": email, "name": "Forger", "password": PASSWORD})
    assert forged.status == 403, forged.text()
    listed = stack.admin.get("/api/v1/developers", params={"email": email})
    assert listed.json()["total"] == 0, listed.text

    # A logged-in developer's form (logout) sent without the token changes nothing; with the token
    # of the page it works, so the refusal was about the token.
    sign_up(stack, steps, page, email)
    log_in(stack, steps, page, email)
    logout = page.locator("form[action$='/logout']")
    assert logout.count() == 1
    token = logout.locator("input[name=csrf_token]").input_value()
    assert token
    forged = page.request.post(stack.url("/portal/logout"), max_redirects=0, form={})
    assert forged.status == 403, forged.text()
    wrong = page.request.post(stack.url("/portal/logout"), max_redirects=0, form={"csrf_token": token[::-1]})
    assert wrong.status == 403, wrong.text()
    still = page.goto(stack.url("/portal/clients"))
    assert still is not None
    assert (still.status, path_of(page)) == (200, "/portal/clients")
    steps.shot(page, "still logged in")
    honest = page.request.post(stack.url("/portal/logout"), max_redirects=0, form={"csrf_token": token})
    assert honest.status == 303, honest.text()
    assert honest.headers["location"].endswith("/portal/login")
    page.goto(stack.url("/portal/clients"))
    assert path_of(page).startswith("/portal/login")
    steps.shot(page, "logged out")


def test_sign_ups_wait_for_an_admins_approval(stack: Stack, steps: Steps) -> None:
    stack.portal_settings(require_developer_approval=True)
    try:
        page = steps.page()
        email = new_email("approval")
        sign_up(stack, steps, page, email)
        developer_id = stack.developer_id(email)
        assert stack.admin.get(f"/api/v1/developers/{developer_id}").json()["status"] == "pending"
        log_in(stack, steps, page, email, status=401)
        assert page.locator("#errors").is_visible()

        approved = stack.admin.patch(f"/api/v1/developers/{developer_id}", json={"status": "active"})
        assert approved.status_code == 200, approved.text
        log_in(stack, steps, page, email)
    finally:
        stack.portal_settings()
