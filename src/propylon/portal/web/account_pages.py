"""Home, sign-up, sign-in, sign-out and password change.

No page tells whether an e-mail address has an account: sign-up answers every valid form with the
same redirect (an existing address is left untouched, after the same password hashing work), and
sign-in answers every failure — unknown address, wrong password, account pending or disabled —
with the same 401 page, after verifying a password hash in every case (a dummy hash for unknown
addresses). Failed sign-ins count against :class:`~propylon.dashboard.throttle.LoginThrottle`
under the same ``developer:`` keys as the JSON API's, so guesses through either share one limit.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

from fastapi import APIRouter
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from propylon.dashboard.changes import Actor, now, record_change
from propylon.dashboard.developers import normalise_email
from propylon.dashboard.errors import ApiError, Problem
from propylon.portal.web.routing import CurrentVisit
from propylon.portal.web.sessions import end_session, start_session
from propylon.portal.web.visit import Visit
from propylon.storage.sql.schema import DeveloperRow, PortalSessionRow
from propylon.web.credentials import hash_password, password_problem, verify_password

THROTTLE_PREFIX = "developer:"
"""The throttle key prefix of developers (the JSON API's ``portal.api._THROTTLE_KEY``)."""
SIGNIN_FAILED = "Wrong e-mail address or password, or the account is not active (yet)."
MAX_PASSWORD = 1024
MAX_EMAIL = 320


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path of the portal to return to after sign-in, else ``None`` (no other
    site, no scheme-relative ``//host``, no backslashes or control characters)."""
    if not value or len(value) > 2000 or not value.startswith("/portal/") or "\\" in value:
        return None
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//") or parts.path == "/portal/logout":
        return None
    return value


def _address(visit: Visit) -> str | None:
    return visit.request.client.host if visit.request.client else None


def add_account_pages(router: APIRouter) -> None:
    """Add the account pages to ``router``."""

    @router.get("/")
    async def home(visit: CurrentVisit) -> Response:
        return visit.page("home.html", visit.portal.portal_name, flash=visit.flash())

    @router.get("/signup")
    async def signup_form(visit: CurrentVisit) -> Response:
        return visit.page("signup.html", "Sign up", email="", name="")

    @router.post("/signup")
    async def signup(visit: CurrentVisit) -> Response:
        form = await visit.posted()
        given_email = form.text("email", "Email", max_length=MAX_EMAIL)
        name = form.text("name", "Name", max_length=200)
        password = form.text("password", "Password", max_length=MAX_PASSWORD, strip=False)
        email = ""
        if given_email:
            try:
                email = normalise_email(given_email)
            except ValueError as exc:
                form.problems.append(Problem("email", f"Email {exc}"))
        if password and (problem := password_problem(password)):
            form.problems.append(Problem("password", f"Password {problem}"))
        if form.problems:
            return visit.page("signup.html", "Sign up", status=422, problems=form.problems,
                              message="The account was not created.", email=given_email, name=name)
        # Hashed whether or not the address is new: the answer's timing must not tell.
        password_hash = await asyncio.to_thread(hash_password, password)
        status = "pending" if visit.portal.require_developer_approval else "active"
        row = DeveloperRow(id=str(uuid.uuid4()), email=email, name=name, status=status,
                           password_hash=password_hash, created_at=now(), updated_at=now())
        try:
            async with visit.context.database.transaction() as session:
                if await session.scalar(select(DeveloperRow.id).where(DeveloperRow.email == email)) is None:
                    session.add(row)
                    await session.flush()
                    await record_change(session, Actor("developer", email, row.id), "signup",
                                        "developer", row.id, {"email": email, "status": status},
                                        versioned=False)
        except IntegrityError:
            pass  # a concurrent sign-up with the same address won: the same answer
        return visit.redirect("/portal/login?signed_up=1")

    @router.get("/login")
    async def login_form(visit: CurrentVisit, next: str | None = None) -> Response:
        flash = visit.flash()
        if visit.request.query_params.get("signed_up") == "1":
            flash = ("If this address was new, the account is created and awaits an "
                     "administrator's approval." if visit.portal.require_developer_approval else
                     "If this address was new, the account is created: sign in.")
        return visit.page("login.html", "Sign in", flash=flash, next=safe_next(next))

    @router.post("/login")
    async def login(visit: CurrentVisit) -> Response:
        form = await visit.posted()
        email = form.text("email", "Email", max_length=MAX_EMAIL).lower()
        password = form.text("password", "Password", max_length=MAX_PASSWORD, strip=False)
        target = safe_next(form.raw("next"))
        if form.problems:
            return visit.page("login.html", "Sign in", status=422, problems=form.problems, next=target)
        throttle, address = visit.context.login_throttle, _address(visit)
        try:
            throttle.check(THROTTLE_PREFIX + email, address)
        except ApiError as exc:
            return visit.page("login.html", "Sign in", status=429, headers=exc.headers,
                              problems=[Problem("", "Too many failed sign-ins; try again later.")],
                              next=target)
        async with visit.context.database.sessions() as session:
            developer = await session.scalar(select(DeveloperRow).where(DeveloperRow.email == email))
        stored = developer.password_hash if developer is not None else None
        matches = await asyncio.to_thread(verify_password, stored, password)
        if not matches or developer is None or developer.status != "active":
            throttle.failed(THROTTLE_PREFIX + email, address)
            return visit.page("login.html", "Sign in", status=401, next=target,
                              problems=[Problem("", SIGNIN_FAILED)])
        throttle.succeeded(THROTTLE_PREFIX + email)
        if visit.signed_in is not None:
            await end_session(visit.context.database, visit.signed_in.digest)
        visit.signed_in_now(await start_session(visit.context.database, visit.settings, developer))
        return visit.redirect(target or "/portal/clients")

    @router.post("/logout")
    async def logout(visit: CurrentVisit) -> Response:
        if visit.signed_in is None:
            return visit.redirect("/portal/login")
        await visit.posted()
        await end_session(visit.context.database, visit.signed_in.digest)
        visit.signed_out_now()
        return visit.redirect("/portal/login", flash="signed_out")

    @router.get("/account/password")
    async def password_form(visit: CurrentVisit) -> Response:
        visit.developer()
        return visit.page("password.html", "Change password", flash=visit.flash())

    @router.post("/account/password")
    async def change_password(visit: CurrentVisit) -> Response:
        me = visit.developer()
        form = await visit.posted()
        current = form.text("current_password", "Current password", max_length=MAX_PASSWORD, strip=False)
        new = form.text("new_password", "New password", max_length=MAX_PASSWORD, strip=False)
        if new and (problem := password_problem(new)):
            form.problems.append(Problem("new_password", f"New password {problem}"))
        if form.problems:
            return visit.page("password.html", "Change password", status=422, problems=form.problems,
                              message="The password was not changed.")
        throttle, address = visit.context.login_throttle, _address(visit)
        try:
            throttle.check(THROTTLE_PREFIX + me.email, address)
        except ApiError as exc:
            return visit.page("password.html", "Change password", status=429, headers=exc.headers,
                              problems=[Problem("", "Too many wrong passwords; try again later.")])
        async with visit.context.database.sessions() as session:
            stored = await session.scalar(select(DeveloperRow.password_hash).where(
                DeveloperRow.id == me.developer_id))
        if not await asyncio.to_thread(verify_password, stored, current):
            throttle.failed(THROTTLE_PREFIX + me.email, address)
            return visit.page("password.html", "Change password", status=422,
                              message="The password was not changed.",
                              problems=[Problem("current_password", "Current password is not correct")])
        throttle.succeeded(THROTTLE_PREFIX + me.email)
        password_hash = await asyncio.to_thread(hash_password, new)
        async with visit.context.database.transaction() as session:
            developer = await session.get(DeveloperRow, me.developer_id)
            if developer is None:
                visit.signed_out_now()
                return visit.redirect("/portal/login")
            developer.password_hash = password_hash
            developer.updated_at = now()
            # Every session ends, this one too; it continues under a new id (below).
            await session.execute(delete(PortalSessionRow).where(
                PortalSessionRow.developer_id == me.developer_id))
            await record_change(session, me.actor, "change_password", "developer", me.developer_id,
                                {"email": me.email}, versioned=False)
        visit.signed_in_now(await start_session(visit.context.database, visit.settings, developer))
        return visit.redirect("/portal/account/password", flash="password_changed")
