"""The dashboard's FastAPI application: the admin REST API under ``/api/v1`` (OpenAPI document at
``/api/openapi.json``), the gateways' sync endpoints under ``/system``, and the developer portal
under ``/portal`` (its JSON API, then its pages).

``create_app`` only assembles routers around a ready :class:`DashboardContext`; building the context
(database, migrations, keys, first admin) is ``service.py``'s job.
"""

from __future__ import annotations

from fastapi import FastAPI

from propylon import __version__
from propylon.dashboard import accounts, audit_routes, gateways_routes
from propylon.dashboard.analytics_routes import analytics_router
from propylon.dashboard.analytics_store import SqlAnalyticsSink
from propylon.dashboard.config_sync import sync_router
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.developers import developers_router
from propylon.dashboard.errors import install_error_handlers
from propylon.dashboard.oauth_clients import oauth_clients_router
from propylon.dashboard.request_guard import BodySizeGuard
from propylon.dashboard.resources import resources_router
from propylon.dashboard.snapshot import SqlSnapshotSource
from propylon.dashboard.tyk_import import router as tyk_import_router
from propylon.portal.api import portal_api_router
from propylon.portal.web import portal_web_router


def create_app(context: DashboardContext) -> FastAPI:
    """The dashboard application serving ``context``."""
    app = FastAPI(
        title="Propylon dashboard",
        version=__version__,
        description="Admin API of Propylon: identity providers, APIs, policies, catalogue, "
        "developers, OAuth clients, analytics and gateways.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    app.include_router(developers_router())
    app.include_router(oauth_clients_router())
    app.include_router(analytics_router())
    app.include_router(resources_router())
    app.include_router(accounts.router)
    app.include_router(audit_routes.router)
    app.include_router(gateways_routes.router)
    app.include_router(tyk_import_router)
    app.include_router(portal_api_router())
    app.include_router(portal_web_router())  # after the JSON API: its 404 page covers /portal/*
    if context.node_secret:
        app.include_router(
            sync_router(
                source=SqlSnapshotSource(context.database),
                notifier=context.notifier,
                nodes=context.nodes,
                analytics=SqlAnalyticsSink(context.database),
                node_secret=context.node_secret,
            )
        )
    app.add_middleware(BodySizeGuard)
    return app
