"""Insert developers, identity providers and OAuth client records straight into the database.

Registering a client goes through the portal's DCR wizard (not built yet), so admin-API tests of
client management start from rows written here, the registration access token encrypted with the
dashboard's own :class:`~propylon.storage.secret_box.SecretBox` exactly as the wizard will store it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from propylon.dashboard.changes import now
from propylon.domain.resources import IdentityProviderSpec
from propylon.storage.secret_box import SecretBox
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import DeveloperRow, IdentityProviderRow, OAuthClientRow
from tests.support.registration_server import RegisteredClient


async def add_identity_provider(database: Database, idp_id: str = "test-idp",
                                issuer: str = "http://127.0.0.1:9") -> str:
    """An identity provider row with a valid spec; returns its id."""
    spec = IdentityProviderSpec(id=idp_id, issuer=issuer).model_dump(mode="json")
    async with database.transaction() as session:
        session.add(IdentityProviderRow(id=idp_id, spec=spec, initial_access_token_enc=None,
                                        created_at=now(), updated_at=now()))
    return idp_id


async def add_developer(database: Database, email: str, *, status: str = "active",
                        name: str = "Dev") -> str:
    """A developer row without a password; returns its id."""
    developer_id = str(uuid.uuid4())
    async with database.transaction() as session:
        session.add(DeveloperRow(id=developer_id, email=email, name=name, status=status,
                                 password_hash=None, created_at=now(), updated_at=now()))
    return developer_id


async def add_client(
    database: Database,
    secrets: SecretBox,
    *,
    developer_id: str,
    identity_provider_id: str,
    registered: RegisteredClient | None = None,
    client_id: str | None = None,
    name: str = "app",
    status: str = "active",
    catalogue_entry_ids: Sequence[str] = (),
    policy_ids: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    access_token: str | None = None,
) -> str:
    """An OAuth client record; returns its id.

    With ``registered`` (from :class:`RegistrationServer.add_client`) the record holds that
    client's id, management URI and encrypted token (``access_token`` overrides the token, e.g.
    with a wrong one). Without it the record is not manageable at an IdP.
    """
    record_id = str(uuid.uuid4())
    token = access_token or (registered.access_token if registered else None)
    async with database.transaction() as session:
        session.add(OAuthClientRow(
            id=record_id,
            client_id=registered.client_id if registered else client_id,
            developer_id=developer_id, identity_provider_id=identity_provider_id, name=name,
            status=status, catalogue_entry_ids=list(catalogue_entry_ids), policy_ids=list(policy_ids),
            metadata_=metadata if metadata is not None else dict(registered.metadata if registered else {}),
            registration_client_uri=registered.registration_client_uri if registered else None,
            registration_access_token_enc=secrets.encrypt(token) if token else None,
            idempotency_key=str(uuid.uuid4()), last_error=None, created_at=now(), updated_at=now(),
        ))
    return record_id
