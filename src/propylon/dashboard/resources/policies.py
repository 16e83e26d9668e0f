"""``/api/v1/policies``: rate limits, quotas, access rights and key expiry.

Gateways receive the ``domain.config.Policy`` fields; ``name``, ``description`` and
``key_expires_in_seconds`` stay in the dashboard. A policy whose access rights name an unknown API
is refused (422); deleting a policy that an API, catalogue entry or OAuth client still uses is
refused (409).
"""

from __future__ import annotations

from propylon.dashboard.resources.crud import DocumentRoutes, document_router
from propylon.dashboard.resources.store import POLICIES
from propylon.domain.resources import PolicySpec, PolicyUpdate, PolicyView

router = document_router(
    DocumentRoutes(
        POLICIES, PolicySpec, PolicyUpdate, PolicyView, plural="policies",
        delete_rule="Delete it unless an API, catalogue entry or OAuth client still uses it (409).",
    ),
    prefix="/policies", tag="policies",
)
