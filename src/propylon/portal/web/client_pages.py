"""OAuth client pages: the registration wizard, list, detail, edit, secret rotation and deletion.

Registration runs the saga of :mod:`propylon.portal.registration` with the idempotency key the
wizard's form carried since it was shown, so submitting the same form twice registers one client:
the second answer says so (409) and links to it; the secret is shown only on the first. Pages with
a secret are ``Cache-Control: no-store`` (as every portal page is) and the secret is stored nowhere.
Another developer's client, or an unknown id, is a 404.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy import select
from starlette.responses import Response

from propylon.dashboard.errors import ApiError, Problem, not_found, problems_from_validation
from propylon.dashboard.resources.store import load_state
from propylon.portal.api import ClientUpdate, client_view, credentials_for
from propylon.portal.catalogue import Listing, published_catalogue
from propylon.portal.registration import (
    AlreadyRegistered,
    NewClient,
    RegistrationRequest,
    delete_client,
    own_client,
    register_client,
    update_client,
)
from propylon.portal.rotation import rotate_client_secret
from propylon.portal.web.forms import Form, plausible_id, split_redirect_uris
from propylon.portal.web.routing import CurrentVisit
from propylon.portal.web.visit import Visit
from propylon.storage.sql.schema import OAuthClientRow

MAX_REDIRECT_TEXT = 50_000
_KEY = re.compile(r"^[A-Za-z0-9-]{8,64}$")
GRANT_NAMES = {
    "client_credentials": "Client credentials (server to server)",
    "authorization_code": "Authorization code (users sign in)",
    "refresh_token": "Refresh token",
    "implicit": "Implicit (legacy)",
    "password": "Resource owner password (legacy)",
}


def _record_id(value: str) -> str:
    """``value`` if it can be a client record id; anything else is simply not found."""
    if not plausible_id(value):
        raise not_found("OAuth client", value[:64])
    return value


def _offered_grants(listings: list[Listing]) -> list[str]:
    grants = [grant for listing in listings for grant in listing.item.grant_types]
    ordered = list(dict.fromkeys(["client_credentials", *grants]))
    return [grant for grant in ordered if grant in grants] or ["client_credentials"]


async def _wizard(visit: Visit, *, status: int = 200, problems: list[Problem] | None = None,
                  values: dict[str, Any] | None = None, message: str | None = None) -> Response:
    listings = [listing for listing in await published_catalogue(visit.context)
                if listing.item.registration_enabled]
    shown: dict[str, Any] = {"catalogue_entry_ids": [], "name": "", "redirect_uris": "",
                             "grant_type": "client_credentials", "idempotency_key": str(uuid.uuid4())}
    shown.update(values or {})
    return visit.page("client_new.html", "Register an OAuth client", status=status,
                      problems=problems or [], message=message, listings=listings,
                      grants=_offered_grants(listings), grant_names=GRANT_NAMES,
                      separator=visit.portal.oauth_redirect_uri_separator, form=shown)


async def _credentials_page(visit: Visit, new: NewClient, title: str, *, rotated: bool) -> Response:
    created = await credentials_for(visit.context, new)
    return visit.page("client_credentials.html", title, created=created, rotated=rotated)


async def _detail_values(visit: Visit, row: OAuthClientRow) -> dict[str, Any]:
    async with visit.context.database.sessions() as session:
        state = await load_state(session, with_clients=False)
    entries = []
    for entry_id in row.catalogue_entry_ids or ():
        entry = state.catalogue.get(entry_id)
        apis = [(state.apis[api_id].name or api_id, state.apis[api_id].listen_path)
                for api_id in (entry.api_ids if entry else ()) if api_id in state.apis]
        entries.append({"id": entry_id, "name": entry.name if entry else entry_id, "apis": apis})
    return {"client": client_view(row), "entries": entries}


def _edit_input(form: Form, separator: str) -> tuple[str, str, list[str]]:
    name = form.text("name", "Name", max_length=200)
    text = form.text("redirect_uris", "Redirect URIs", max_length=MAX_REDIRECT_TEXT, required=False,
                     multiline=True)
    return name, text, split_redirect_uris(text, separator)


def add_client_pages(router: APIRouter) -> None:
    """Add the OAuth client pages to ``router``."""

    @router.get("/clients")
    async def clients(visit: CurrentVisit) -> Response:
        me = visit.developer()
        async with visit.context.database.sessions() as session:
            rows = (await session.scalars(
                select(OAuthClientRow).where(OAuthClientRow.developer_id == me.developer_id)
                .order_by(OAuthClientRow.created_at, OAuthClientRow.id))).all()
        return visit.page("clients.html", "OAuth clients", flash=visit.flash(),
                          clients=[client_view(row) for row in rows])

    @router.get("/clients/new")
    async def wizard(visit: CurrentVisit) -> Response:
        visit.developer()
        return await _wizard(visit)

    @router.post("/clients")
    async def register(visit: CurrentVisit) -> Response:
        me = visit.developer()
        form = await visit.posted()
        entry_ids = form.choices("catalogue_entry_ids", "APIs", max_count=20)
        name = form.text("name", "Name", max_length=200)
        uris_text = form.text("redirect_uris", "Redirect URIs", max_length=MAX_REDIRECT_TEXT,
                              required=False, multiline=True)
        grant_type = form.text("grant_type", "Grant type", max_length=100, required=False) or None
        key = form.raw("idempotency_key") or ""
        if not _KEY.match(key):
            form.problems.append(Problem("idempotency_key", "The form is incomplete: reload the page"))
            key = str(uuid.uuid4())
        if not entry_ids and not any(p.location == "catalogue_entry_ids" for p in form.problems):
            form.problems.append(Problem("catalogue_entry_ids", "choose at least one API"))
        uris = split_redirect_uris(uris_text, visit.portal.oauth_redirect_uri_separator)
        kept = {"catalogue_entry_ids": entry_ids, "name": name, "redirect_uris": uris_text,
                "grant_type": grant_type or "client_credentials", "idempotency_key": key}
        failed = "The client was not registered."
        if form.problems:
            return await _wizard(visit, status=422, problems=form.problems, values=kept, message=failed)
        try:
            request = RegistrationRequest(catalogue_entry_ids=entry_ids, name=name,
                                          redirect_uris=uris, grant_type=grant_type)
        except ValidationError as exc:
            return await _wizard(visit, status=422, problems=problems_from_validation(exc.errors()),
                                 values=kept, message=failed)
        try:
            new = await register_client(visit.context, me.actor, request, key)
        except AlreadyRegistered as exc:
            row = await own_client(visit.context, me.developer_id, exc.record_id)
            return visit.page("client_already.html", "Client already registered", status=409,
                              client=client_view(row))
        except ApiError as exc:
            if exc.status != 422:
                raise
            return await _wizard(visit, status=422, problems=list(exc.problems), values=kept,
                                 message=failed)
        return await _credentials_page(visit, new, "Client registered", rotated=False)

    @router.get("/clients/{record_id}")
    async def detail(record_id: str, visit: CurrentVisit) -> Response:
        me = visit.developer()
        row = await own_client(visit.context, me.developer_id, _record_id(record_id))
        return visit.page("client_detail.html", row.name, flash=visit.flash(),
                          **await _detail_values(visit, row))

    @router.get("/clients/{record_id}/edit")
    async def edit_form(record_id: str, visit: CurrentVisit) -> Response:
        me = visit.developer()
        row = await own_client(visit.context, me.developer_id, _record_id(record_id))
        view = client_view(row)
        return visit.page("client_edit.html", f"Edit {row.name}", client=view,
                          form={"name": view.name, "redirect_uris": "\n".join(view.redirect_uris)},
                          separator=visit.portal.oauth_redirect_uri_separator)

    @router.post("/clients/{record_id}/edit")
    async def edit(record_id: str, visit: CurrentVisit) -> Response:
        me = visit.developer()
        row = await own_client(visit.context, me.developer_id, _record_id(record_id))
        form = await visit.posted()
        name, text, uris = _edit_input(form, visit.portal.oauth_redirect_uri_separator)
        problems = list(form.problems)
        if not problems:
            try:
                ClientUpdate(name=name, redirect_uris=uris)
            except ValidationError as exc:
                problems = problems_from_validation(exc.errors())
        if not problems:
            view = client_view(row)
            try:
                await update_client(visit.context, me.actor, row.id,
                                    name=name if name != view.name else None,
                                    redirect_uris=uris if uris != view.redirect_uris else None)
            except ApiError as exc:
                if exc.status != 422:
                    raise
                problems = list(exc.problems)
            else:
                return visit.redirect(f"/portal/clients/{row.id}", flash="updated")
        return visit.page("client_edit.html", f"Edit {row.name}", status=422, problems=problems,
                          message="The client was not changed.", client=client_view(row),
                          form={"name": name, "redirect_uris": text},
                          separator=visit.portal.oauth_redirect_uri_separator)

    @router.post("/clients/{record_id}/rotate-secret")
    async def rotate(record_id: str, visit: CurrentVisit) -> Response:
        me = visit.developer()
        row = await own_client(visit.context, me.developer_id, _record_id(record_id))
        await visit.posted()
        new = await rotate_client_secret(visit.context, me.actor, row.id)
        return await _credentials_page(visit, new, "New client secret", rotated=True)

    @router.get("/clients/{record_id}/delete")
    async def delete_form(record_id: str, visit: CurrentVisit) -> Response:
        me = visit.developer()
        row = await own_client(visit.context, me.developer_id, _record_id(record_id))
        return visit.page("client_delete.html", f"Delete {row.name}?", client=client_view(row))

    @router.post("/clients/{record_id}/delete")
    async def delete(record_id: str, visit: CurrentVisit) -> Response:
        me = visit.developer()
        row = await own_client(visit.context, me.developer_id, _record_id(record_id))
        await visit.posted()
        result = await delete_client(visit.context, me.actor, row.id)
        return visit.redirect("/portal/clients",
                              flash="deleted" if result.status == "deleted" else "deletion_pending")
