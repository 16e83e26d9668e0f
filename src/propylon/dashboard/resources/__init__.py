"""The admin API's configuration resources under ``/api/v1``: identity providers, APIs, policies,
catalogue entries and portal settings (one module each; shared reading, validation and writing in
``store.py``)."""

from __future__ import annotations

from fastapi import APIRouter

from propylon.dashboard.resources import apis, catalogue, identity_providers, policies, portal_settings
from propylon.dashboard.resources.deps import ERROR_RESPONSES


def resources_router() -> APIRouter:
    """Every configuration-resource route, under ``/api/v1``."""
    router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
    for module in (identity_providers, apis, policies, catalogue, portal_settings):
        router.include_router(module.router)
    return router
