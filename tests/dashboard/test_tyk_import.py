"""Importing Tyk Classic definitions into the database: mapped, merged, validated as a whole,
idempotent."""

from __future__ import annotations

import json
from typing import Any

import httpx

from propylon.dashboard.snapshot import SqlSnapshotSource
from tests.dashboard.conftest import Dashboard
from tests.dashboard.documents import api_doc, audit, created, locations, version
from tests.tyk.test_dashboard_config import SECRETS, dashboard_conf
from tests.tyk.test_translate import KEYCLOAK_JWKS, POLICIES, SAMPLES, jwt_api

ISSUER = "https://sso.example.com/realms/acme"
IDP_ID = "sso.example.com-realms-acme"  # derived by the translation from the JWKS URL


def tyk_body(**overrides: Any) -> dict[str, Any]:
    """An import of one JWT API and two policies (the first with a name and a key expiry)."""
    policies = [{**POLICIES[0], "name": "Bronze plan", "key_expires_in": 3600}, POLICIES[1]]
    return {"documents": [jwt_api(), {p["id"]: p for p in policies}], **overrides}


async def test_import_creates_every_resource_and_publishes_them(
    admin: httpx.AsyncClient, dashboard: Dashboard
) -> None:
    before = await version(dashboard.context.database)
    response = await admin.post("/api/v1/import/tyk", json=tyk_body())
    assert response.status_code == 200, response.text
    result = response.json()
    assert sorted(result["created"]) == [
        "apis/orders-api", f"identity-providers/{IDP_ID}", "policies/bronze", "policies/gold",
    ]
    assert result["updated"] == result["unchanged"] == []
    assert result["config_version"] == before + 1 == await version(dashboard.context.database)

    bronze = (await admin.get("/api/v1/policies/bronze")).json()
    assert bronze["name"] == "Bronze plan"
    assert bronze["key_expires_in_seconds"] == 3600
    assert bronze["rate"] == {"requests": 10, "per_seconds": 60.0}
    idp = (await admin.get("/api/v1/identity-providers/sso.example.com-realms-acme")).json()
    assert idp["issuer"] == ISSUER
    assert idp["jwks_uri"] == KEYCLOAK_JWKS
    snapshot = await SqlSnapshotSource(dashboard.context.database).snapshot()
    assert [a["id"] for a in snapshot.config["apis"]] == ["orders-api"]
    assert snapshot.config["apis"][0]["auth"]["client_claims"][0] == "azp"


async def test_importing_again_changes_nothing(
    admin: httpx.AsyncClient, dashboard: Dashboard
) -> None:
    assert (await admin.post("/api/v1/import/tyk", json=tyk_body())).status_code == 200
    database = dashboard.context.database
    version_after_first, audit_after_first = await version(database), len(await audit(database))

    again = (await admin.post("/api/v1/import/tyk", json=tyk_body())).json()
    assert again["created"] == again["updated"] == []
    assert len(again["unchanged"]) == 4
    assert again["config_version"] is None
    assert await version(database) == version_after_first
    assert len(await audit(database)) == audit_after_first

    changed = tyk_body()
    changed["documents"][1]["gold"] = {**POLICIES[1], "rate": 200}
    result = (await admin.post("/api/v1/import/tyk", json=changed)).json()
    assert result["updated"] == ["policies/gold"]
    assert (await admin.get("/api/v1/policies/gold")).json()["rate"]["requests"] == 200


async def test_a_provider_set_up_for_registration_keeps_its_dashboard_fields(
    admin: httpx.AsyncClient,
) -> None:
    assert (await admin.post("/api/v1/import/tyk", json=tyk_body())).status_code == 200
    path = "/api/v1/identity-providers/sso.example.com-realms-acme"
    stored = (await admin.get(path)).json()
    document = {k: v for k, v in stored.items()
                if k not in ("has_initial_access_token", "created_at", "updated_at")}
    document.update(kind="keycloak", name="Acme SSO", initial_access_token="iat-secret-value",
                    registration_endpoint=f"{ISSUER}/clients-registrations/openid-connect")
    response = await admin.put(path, json=document)
    assert response.status_code == 200, response.text

    result = (await admin.post("/api/v1/import/tyk", json=tyk_body())).json()
    assert "identity-providers/sso.example.com-realms-acme" in result["unchanged"]
    kept = (await admin.get(path)).json()
    assert kept["kind"] == "keycloak"
    assert kept["name"] == "Acme SSO"
    assert kept["registration_endpoint"].endswith("/clients-registrations/openid-connect")
    assert kept["has_initial_access_token"] is True


async def test_a_clash_is_refused_whole_and_writes_nothing(
    admin: httpx.AsyncClient, dashboard: Dashboard
) -> None:
    # An API already routes /orders: the imported one would take the same listen path.
    await created(admin, "/api/v1/identity-providers",
                  {"id": "main", "issuer": "https://idp.example.com"})
    await created(admin, "/api/v1/apis", api_doc("existing", idp="main") | {"listen_path": "/orders/"})
    database = dashboard.context.database
    before = (await version(database), len(await audit(database)))

    response = await admin.post("/api/v1/import/tyk", json=tyk_body())
    assert response.status_code == 422
    assert any("listen path" in p["message"] for p in response.json()["problems"])
    assert (await version(database), len(await audit(database))) == before
    assert (await admin.get("/api/v1/policies/bronze")).status_code == 404


async def test_a_dry_run_reports_without_writing(
    admin: httpx.AsyncClient, dashboard: Dashboard
) -> None:
    before = await version(dashboard.context.database)
    result = (await admin.post("/api/v1/import/tyk", json=tyk_body(dry_run=True))).json()
    assert len(result["created"]) == 4
    assert result["dry_run"] is True
    assert await version(dashboard.context.database) == before
    assert (await admin.get("/api/v1/apis/orders-api")).status_code == 404


async def test_the_real_samples_import_with_their_report(admin: httpx.AsyncClient) -> None:
    documents = [json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))]
    result = (await admin.post("/api/v1/import/tyk", json={"documents": [*documents, 42]})).json()
    assert sorted(result["created"]) == ["apis/3", "policies/default"]
    assert any("custom_middleware" in line for line in result["skipped"] + result["notes"])
    assert result["unrecognised"] == [f"documents.{len(documents)}"]


async def test_bad_requests_and_missing_credentials(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    assert (await anonymous.post("/api/v1/import/tyk", json=tyk_body())).status_code == 401
    response = await admin.post("/api/v1/import/tyk", json={"documents": [], "surprise": 1})
    assert response.status_code == 422
    assert {p["location"] for p in response.json()["problems"]} == {"documents", "surprise"}


SEPARATOR_PATH = "documents.2.oauth_redirect_uri_separator"


async def test_a_dashboard_config_sets_the_portals_redirect_uri_separator(
    admin: httpx.AsyncClient, dashboard: Dashboard
) -> None:
    database = dashboard.context.database
    saved = await admin.put("/api/v1/portal-settings", json={"portal_name": "Acme APIs", "gateway_url":
                                                             "https://api.example"})
    assert saved.status_code == 200, saved.text
    before = await version(database)

    body = tyk_body()
    body["documents"].append(dashboard_conf())
    response = await admin.post("/api/v1/import/tyk", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["updated"] == ["portal-settings"]
    assert len(result["created"]) == 4
    assert result["config_version"] == before + 1 == await version(database)
    assert any(line.startswith("Tyk Dashboard configuration documents.2: settings with no Propylon")
               and "admin_secret" in line for line in result["skipped"])
    assert not [secret for secret in SECRETS if secret in response.text]

    settings = (await admin.get("/api/v1/portal-settings")).json()
    assert settings["oauth_redirect_uri_separator"] == ";"
    assert (settings["portal_name"], settings["gateway_url"]) == ("Acme APIs", "https://api.example")
    [entry] = [e for e in await audit(database)
               if e.resource_type == "portal-settings" and e.action == "import"]
    assert entry.details["source"] == "tyk"
    assert entry.details["document"]["oauth_redirect_uri_separator"] == ";"
    assert not [secret for secret in SECRETS
                for e in await audit(database) if secret in json.dumps(e.details)]

    # Importing the same files again changes nothing, the settings included.
    audit_count = len(await audit(database))
    again = (await admin.post("/api/v1/import/tyk", json=body)).json()
    assert "portal-settings" in again["unchanged"]
    assert again["created"] == again["updated"] == []
    assert again["config_version"] is None
    assert (await version(database), len(await audit(database))) == (before + 1, audit_count)


async def test_a_dashboard_config_alone_or_a_dry_run(admin: httpx.AsyncClient, dashboard: Dashboard) -> None:
    database = dashboard.context.database
    start = await version(database)
    # The default separator already: nothing to do.
    same = (await admin.post("/api/v1/import/tyk", json={"documents": [
        dashboard_conf(oauth_redirect_uri_separator=",")]})).json()
    assert (same["unchanged"], same["config_version"]) == (["portal-settings"], None)
    dry = (await admin.post("/api/v1/import/tyk", json={"documents": [dashboard_conf()], "dry_run": True}))
    assert dry.json()["updated"] == ["portal-settings"]
    assert await version(database) == start
    assert (await admin.get("/api/v1/portal-settings")).json()["updated_at"] is None
    done = (await admin.post("/api/v1/import/tyk", json={"documents": [dashboard_conf()]})).json()
    assert done["config_version"] == start + 1
    assert (await admin.get("/api/v1/portal-settings")).json()["oauth_redirect_uri_separator"] == ";"


async def test_a_bad_separator_refuses_the_whole_import(
    admin: httpx.AsyncClient, dashboard: Dashboard
) -> None:
    database = dashboard.context.database
    before = (await version(database), len(await audit(database)))
    body = tyk_body()
    body["documents"].append(dashboard_conf(oauth_redirect_uri_separator="/"))
    response = await admin.post("/api/v1/import/tyk", json=body)
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem["location"] == SEPARATOR_PATH
    assert "appear inside URLs" in problem["message"]
    assert not [secret for secret in SECRETS if secret in response.text]
    assert (await version(database), len(await audit(database))) == before
    assert (await admin.get("/api/v1/policies/bronze")).status_code == 404
    assert (await admin.get("/api/v1/portal-settings")).json()["oauth_redirect_uri_separator"] == ","

    body["documents"][2] = dashboard_conf(oauth_redirect_uri_separator="   ")
    blank = await admin.post("/api/v1/import/tyk", json=body)
    assert blank.status_code == 422
    assert locations(blank) == {SEPARATOR_PATH}
    assert (await version(database), len(await audit(database))) == before
