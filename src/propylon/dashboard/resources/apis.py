"""``/api/v1/apis``: the APIs gateways proxy (a document is exactly ``domain.config.Api``).

A write is refused (422) when the API names an unknown identity provider or policy, or takes a
listen path another API routes on; deleting an API that a policy's access rights or a catalogue
entry still names is refused (409).
"""

from __future__ import annotations

from propylon.dashboard.resources.crud import DocumentRoutes, document_router
from propylon.dashboard.resources.store import APIS
from propylon.domain.resources import ApiSpec, ApiUpdate, ApiView

router = document_router(
    DocumentRoutes(
        APIS, ApiSpec, ApiUpdate, ApiView, plural="APIs",
        delete_rule="Delete it unless a policy's access rights or a catalogue entry still name it (409).",
    ),
    prefix="/apis", tag="APIs",
)
