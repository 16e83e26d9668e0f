"""The provider's HTTP routes (Starlette), each a thin async shell around one Authlib call.

The async side reads and checks the request (``provider.http``), the Authlib call runs in a worker
thread (``ProviderServer.respond``), and every failure is an OAuth-style JSON error with a 4xx
status (an HTML page on the sign-in page), never a 500.

Routes: ``/.well-known/openid-configuration`` and ``/.well-known/oauth-authorization-server``
(discovery), ``/jwks``, ``/register`` and ``/register/{client_id}`` (RFC 7591/7592), ``/token``,
``/authorize`` (sign-in page), ``/introspect`` (RFC 7662), ``/revoke`` (RFC 7009).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from propylon.provider.clients import ProviderUser
from propylon.provider.http import (
    FormRequest,
    ParsedRequest,
    RequestProblem,
    read_form,
    read_json,
    read_query,
)
from propylon.provider.login import (
    AUTHORIZATION_FIELDS,
    CSRF_COOKIE,
    CSRF_FIELD,
    csrf_matches,
    error_page,
    login_page,
    new_csrf_token,
)
from propylon.provider.server import ProviderServer, json_response, metadata_document, oauth_error

_MAX_CREDENTIAL_CHARS = 1024


def create_app(server: ProviderServer, *, on_shutdown: Callable[[], None] | None = None) -> Starlette:
    """The ASGI app serving ``server``; ``on_shutdown`` runs when the app stops (closes storage)."""
    settings = server.settings
    issuer = server.issuer
    limit = settings.max_body_bytes
    secure_cookie = issuer.startswith("https://")

    async def discovery(request: Request) -> Response:
        return json_response(200, metadata_document(issuer, server.keys.alg),
                             {"Cache-Control": "public, max-age=300"})

    async def jwks(request: Request) -> Response:
        document = await run_in_threadpool(server.keys.jwks)
        # Short: a rotated key must reach relying parties soon (they also refetch on an unknown kid).
        return json_response(200, document, {"Cache-Control": "public, max-age=300"})

    async def register(request: Request) -> Response:
        parsed = await read_json(request, issuer, limit)
        return await _call(lambda: server.create_endpoint_response("client_registration", parsed))

    async def configure(request: Request) -> Response:
        parsed = await read_json(request, issuer, limit, body_expected=request.method == "PUT")
        return await _call(lambda: server.create_endpoint_response("client_configuration", parsed))

    async def token(request: Request) -> Response:
        parsed = await read_form(request, issuer, limit)
        return await _call(lambda: server.create_token_response(parsed))

    async def introspect(request: Request) -> Response:
        parsed = await read_form(request, issuer, limit)
        return await _call(lambda: server.create_endpoint_response("introspection", parsed))

    async def revoke(request: Request) -> Response:
        parsed = await read_form(request, issuer, limit)
        return await _call(lambda: server.create_endpoint_response("revocation", parsed))

    async def _call(action: Callable[[], Any]) -> Response:
        return await run_in_threadpool(server.respond, action)

    async def authorize(request: Request) -> Response:
        try:
            if request.method == "GET":
                parsed = read_query(request, issuer)
                # Keep the browser's CSRF token: a second tab must not void the first one's form.
                csrf = request.cookies.get(CSRF_COOKIE) or ""
                if not (20 <= len(csrf) <= 64 and csrf.isascii()
                        and csrf.replace("-", "").replace("_", "").isalnum()):
                    csrf = new_csrf_token()
                return await run_in_threadpool(_show_login, parsed, csrf)
            parsed = await read_form(request, issuer, limit, unique=False)
        except RequestProblem as problem:
            return error_page(problem.description, problem.status)
        fields = dict(parsed.params)
        if not csrf_matches(request.cookies.get(CSRF_COOKIE), fields.get(CSRF_FIELD)):
            return error_page("The sign-in form expired or was not sent from this page. Go back to "
                              "the application and start again.", 400)
        username = fields.get("username", "")
        password = fields.get("password", "")
        parsed.params = [(name, value) for name, value in parsed.params
                         if name in AUTHORIZATION_FIELDS]
        return await run_in_threadpool(_sign_in, parsed, username, password, fields[CSRF_FIELD])

    def _consent_grant(parsed: ParsedRequest) -> tuple[Any, Response | None]:
        request = FormRequest(parsed, allow_insecure=not settings.production)
        try:
            return server.get_consent_grant(request), None
        except OAuth2Error as error:
            if error.redirect_uri:
                # The client and its redirect URI are known: the error goes back to it.
                error.state = request.payload.state
                return None, server.respond(partial(server.handle_error_response, request, error))
            description = error.get_error_description() or ""
            return None, error_page(f"{error.error}: {description}" if description else error.error)
        except (ValueError, TypeError, LookupError, AttributeError, UnicodeError):
            return None, error_page("The authorization request could not be processed.")

    def _show_login(parsed: ParsedRequest, csrf_token: str) -> Response:
        grant, failure = _consent_grant(parsed)
        if failure is not None:
            return failure
        return login_page(dict(parsed.params), _client_name(grant), csrf_token,
                          secure_cookie=secure_cookie)

    def _sign_in(parsed: ParsedRequest, username: str, password: str, csrf_token: str) -> Response:
        grant, failure = _consent_grant(parsed)
        if failure is not None:
            return failure
        user = None
        if 0 < len(username) <= _MAX_CREDENTIAL_CHARS and 0 < len(password) <= _MAX_CREDENTIAL_CHARS:
            user = server.store.authenticate_user(username, password)
        if user is None:
            # The same CSRF token: the browser may have this page open in several tabs.
            return login_page(dict(parsed.params), _client_name(grant), csrf_token,
                              error="Wrong username or password.", username=username[:200],
                              status=401, secure_cookie=secure_cookie)
        grant_user = ProviderUser(user.user_id, user.username)
        return server.respond(lambda: server.create_authorization_response(
            request=grant.request, grant_user=grant_user, grant=grant), grant.request)

    def _client_name(grant: Any) -> str:
        client = grant.request.client
        name = client.metadata.get("client_name")
        return name if isinstance(name, str) and name else str(client.client_id)

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestProblem)
        return oauth_error(exc.status, exc.error, exc.description)

    async def http_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return oauth_error(405, "invalid_request", f"{request.method} is not allowed here")
        if exc.status_code == 404:
            return oauth_error(404, "not_found", "no such endpoint")
        return oauth_error(exc.status_code, "invalid_request", str(exc.detail))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            on_shutdown()

    routes = [
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", discovery, methods=["GET"]),
        Route("/jwks", jwks, methods=["GET"]),
        Route("/register", register, methods=["POST"]),
        Route("/register/{client_id}", configure, methods=["GET", "PUT", "DELETE"]),
        Route("/token", token, methods=["POST"]),
        Route("/authorize", authorize, methods=["GET", "POST"]),
        Route("/introspect", introspect, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={RequestProblem: problem, HTTPException: http_problem})
