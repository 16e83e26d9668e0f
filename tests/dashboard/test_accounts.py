"""Admin accounts, admin API tokens, the must-change-password gate and login throttling."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from propylon.dashboard.changes import now
from propylon.dashboard.errors import ApiError
from propylon.dashboard.throttle import LoginThrottle
from propylon.storage.sql.schema import AdminUserRow, ApiTokenRow, AuditEntryRow
from tests.dashboard.conftest import Dashboard

NEW_PASSWORD = "a much longer passphrase 42"


def basic(username: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    """A Bearer Authorization header."""
    return {"Authorization": f"Bearer {token}"}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(dashboard: Dashboard) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no default credentials (each call passes its own)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dashboard.app), base_url="http://dashboard.test"
    ) as c:
        yield c


async def _audit(dashboard: Dashboard) -> list[AuditEntryRow]:
    async with dashboard.context.database.sessions() as session:
        return list((await session.scalars(select(AuditEntryRow).order_by(AuditEntryRow.id))).all())


async def _create_admin(admin: httpx.AsyncClient, username: str, *, must_change: bool = False) -> str:
    response = await admin.post(
        "/api/v1/admins",
        json={"username": username, "password": NEW_PASSWORD, "must_change_password": must_change},
    )
    assert response.status_code == 201, response.text
    admin_id: str = response.json()["id"]
    return admin_id


# --- /me ---------------------------------------------------------------------------------------


async def test_me_with_a_token_and_with_a_password(dashboard: Dashboard, client: httpx.AsyncClient) -> None:
    by_token = await client.get("/api/v1/me", headers=bearer(dashboard.admin_token))
    assert by_token.status_code == 200
    assert by_token.json()["username"] == "admin"
    assert by_token.json()["authenticated_with"] == "token"
    assert by_token.json()["token_id"]
    by_password = await client.get("/api/v1/me", headers=basic("admin", dashboard.admin_password))
    assert by_password.status_code == 200
    assert by_password.json()["authenticated_with"] == "password"
    assert by_password.json()["must_change_password"] is False
    assert "password_hash" not in by_password.text


async def test_account_routes_need_credentials(client: httpx.AsyncClient) -> None:
    attempts = [(path, headers) for path in ("/api/v1/me", "/api/v1/admins", "/api/v1/tokens")
                for headers in ({}, bearer("ppl_not-a-token"))]
    attempts.append(("/api/v1/tokens", basic("admin", "wrong password!")))
    attempts.append(("/api/v1/me", basic("ad\x00min", "wrong password!")))  # NUL: not a DB error
    for path, headers in attempts:
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.json()["error"] == "unauthorized"
        assert "Basic" in response.headers["WWW-Authenticate"]


# --- password change and the must-change gate ----------------------------------------------------


async def test_must_change_password_gate(dashboard: Dashboard, admin: httpx.AsyncClient,
                                         client: httpx.AsyncClient) -> None:
    await _create_admin(admin, "bob", must_change=True)
    bob = basic("bob", NEW_PASSWORD)

    me = await client.get("/api/v1/me", headers=bob)
    assert me.status_code == 200
    assert me.json()["must_change_password"] is True
    for method, path in (("GET", "/api/v1/admins"), ("POST", "/api/v1/tokens"), ("GET", "/api/v1/audit")):
        blocked = await client.request(method, path, headers=bob, json={"name": "x"})
        assert blocked.status_code == 403, path
        assert blocked.json()["error"] == "password_change_required"

    # Every problem at once: wrong current password, too short, and nothing else written.
    bad = await client.post("/api/v1/me/password", headers=bob,
                            json={"current_password": "not it at all", "new_password": "short"})
    assert bad.status_code == 422
    assert {p["location"] for p in bad.json()["problems"]} == {"current_password", "new_password"}
    same = await client.post("/api/v1/me/password", headers=bob,
                             json={"current_password": NEW_PASSWORD, "new_password": NEW_PASSWORD})
    assert same.status_code == 422
    assert same.json()["problems"][0]["message"] == "must differ from the current password"

    changed = await client.post("/api/v1/me/password", headers=bob,
                                json={"current_password": NEW_PASSWORD,
                                      "new_password": "bob's own passphrase"})
    assert changed.status_code == 204
    assert (await client.get("/api/v1/me", headers=bob)).status_code == 401
    bob = basic("bob", "bob's own passphrase")
    assert (await client.get("/api/v1/me", headers=bob)).json()["must_change_password"] is False
    assert (await client.get("/api/v1/admins", headers=bob)).status_code == 200

    entries = [e for e in await _audit(dashboard) if e.action == "change_password"]
    assert len(entries) == 1
    assert entries[0].actor == "admin:bob"
    assert entries[0].config_version is None
    assert "passphrase" not in str(entries[0].details)


async def test_tokens_are_not_held_back_by_a_pending_password_change(
    dashboard: Dashboard, client: httpx.AsyncClient
) -> None:
    async with dashboard.context.database.transaction() as session:
        await session.execute(update(AdminUserRow).values(must_change_password=True))
    assert (await client.get("/api/v1/admins", headers=bearer(dashboard.admin_token))).status_code == 200
    blocked = await client.get("/api/v1/admins", headers=basic("admin", dashboard.admin_password))
    assert blocked.status_code == 403


async def test_password_change_needs_credentials_and_a_valid_body(
    dashboard: Dashboard, client: httpx.AsyncClient
) -> None:
    body = {"current_password": dashboard.admin_password, "new_password": NEW_PASSWORD}
    assert (await client.post("/api/v1/me/password", json=body)).status_code == 401
    missing = await client.post("/api/v1/me/password", headers=bearer(dashboard.admin_token), json={"x": 1})
    assert missing.status_code == 422
    assert {p["location"] for p in missing.json()["problems"]} == {"current_password", "new_password", "x"}


async def test_a_token_can_change_its_owners_password_with_the_current_one(
    dashboard: Dashboard, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/api/v1/me/password", headers=bearer(dashboard.admin_token),
        json={"current_password": dashboard.admin_password, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    assert (await client.get("/api/v1/me", headers=basic("admin", NEW_PASSWORD))).status_code == 200


# --- admins ------------------------------------------------------------------------------------


async def test_create_list_and_delete_admins(dashboard: Dashboard, admin: httpx.AsyncClient,
                                             client: httpx.AsyncClient) -> None:
    created = await admin.post("/api/v1/admins", json={"username": "carol", "password": NEW_PASSWORD})
    assert created.status_code == 201
    carol = created.json()
    assert carol["username"] == "carol"
    assert carol["must_change_password"] is True
    assert "password" not in carol
    listed = await admin.get("/api/v1/admins")
    assert [a["username"] for a in listed.json()] == ["admin", "carol"]

    deleted = await admin.delete(f"/api/v1/admins/{carol['id']}")
    assert deleted.status_code == 204
    assert (await client.get("/api/v1/me", headers=basic("carol", NEW_PASSWORD))).status_code == 401
    again = await admin.delete(f"/api/v1/admins/{carol['id']}")
    assert again.status_code == 404

    actions = [(e.action, e.resource_type, e.resource_id) for e in await _audit(dashboard)]
    assert actions == [("create", "admin_user", carol["id"]), ("delete", "admin_user", carol["id"])]
    assert all(NEW_PASSWORD not in str(e.details) for e in await _audit(dashboard))


async def test_create_admin_reports_every_problem(admin: httpx.AsyncClient, dashboard: Dashboard) -> None:
    response = await admin.post(
        "/api/v1/admins", json={"username": " bad name", "password": "short", "colour": "blue"}
    )
    assert response.status_code == 422
    locations = {p["location"] for p in response.json()["problems"]}
    assert locations == {"username", "password", "colour"}
    assert "short" not in response.text
    assert await _audit(dashboard) == []


async def test_duplicate_admin_username_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await _create_admin(admin, "dave")
    response = await admin.post("/api/v1/admins", json={"username": "dave", "password": NEW_PASSWORD})
    assert response.status_code == 409
    assert response.json()["problems"] == [{"location": "username", "message": "is taken"}]


async def test_cannot_delete_yourself_or_the_last_admin(dashboard: Dashboard, admin: httpx.AsyncClient,
                                                        client: httpx.AsyncClient) -> None:
    me = (await admin.get("/api/v1/me")).json()
    last = await admin.delete(f"/api/v1/admins/{me['id']}")
    assert last.status_code == 409
    assert "last admin" in last.json()["message"]

    erin_id = await _create_admin(admin, "erin")
    erin = basic("erin", NEW_PASSWORD)
    yourself = await client.delete(f"/api/v1/admins/{erin_id}", headers=erin)
    assert yourself.status_code == 409
    assert "your own" in yourself.json()["message"]
    # Through one of your tokens, it is still yourself.
    token = (await client.post("/api/v1/tokens", headers=erin, json={"name": "erin-ci"})).json()["token"]
    assert (await client.delete(f"/api/v1/admins/{erin_id}", headers=bearer(token))).status_code == 409

    # Erin deletes the first admin: its token dies with it.
    assert (await client.delete(f"/api/v1/admins/{me['id']}", headers=erin)).status_code == 204
    assert (await admin.get("/api/v1/me")).status_code == 401
    assert (await client.delete(f"/api/v1/admins/{erin_id}", headers=erin)).status_code == 409
    async with dashboard.context.database.sessions() as session:
        assert await session.scalar(select(ApiTokenRow).where(ApiTokenRow.admin_user_id == me["id"])) is None


# --- tokens ------------------------------------------------------------------------------------


async def test_token_lifecycle(dashboard: Dashboard, admin: httpx.AsyncClient,
                               client: httpx.AsyncClient) -> None:
    created = await admin.post("/api/v1/tokens", json={"name": "deploy bot", "expires_in_days": 30})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    body = created.json()
    token = body["token"]
    assert token.startswith("ppl_")
    assert token.startswith(body["prefix"])
    assert body["admin_username"] == "admin"
    assert body["revoked"] is False
    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (now() + timedelta(days=30))) < timedelta(minutes=1)

    me = await client.get("/api/v1/me", headers=bearer(token))
    assert me.json()["token_id"] == body["id"]

    listed = await admin.get("/api/v1/tokens")
    assert listed.status_code == 200
    assert token not in listed.text
    assert dashboard.admin_token not in listed.text
    mine = next(t for t in listed.json() if t["id"] == body["id"])
    assert mine["last_used_at"] is not None
    assert "token" not in mine

    assert (await admin.delete(f"/api/v1/tokens/{body['id']}")).status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401
    listed = await admin.get("/api/v1/tokens")
    assert next(t for t in listed.json() if t["id"] == body["id"])["revoked"] is True
    assert (await admin.delete(f"/api/v1/tokens/{body['id']}")).status_code == 204
    assert (await admin.delete("/api/v1/tokens/no-such-token")).status_code == 404
    assert (await admin.delete("/api/v1/tokens/bad%00id")).status_code == 422

    entries = [e for e in await _audit(dashboard) if e.resource_type == "api_token"]
    assert [e.action for e in entries] == ["create", "revoke"]
    assert all(token not in str(e.details) for e in entries)
    assert entries[0].details["prefix"] == body["prefix"]


async def test_expired_token_is_refused(dashboard: Dashboard, admin: httpx.AsyncClient,
                                        client: httpx.AsyncClient) -> None:
    body = (await admin.post("/api/v1/tokens", json={"name": "short-lived", "expires_in_days": 1})).json()
    async with dashboard.context.database.transaction() as session:
        await session.execute(
            update(ApiTokenRow)
            .where(ApiTokenRow.id == body["id"])
            .values(expires_at=now() - timedelta(seconds=1))
        )
    assert (await client.get("/api/v1/me", headers=bearer(body["token"]))).status_code == 401


async def test_create_token_reports_every_problem(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/v1/tokens", json={"name": "   ", "expires_in_days": 0})
    assert response.status_code == 422
    assert {p["location"] for p in response.json()["problems"]} == {"name", "expires_in_days"}


# --- throttling --------------------------------------------------------------------------------
# The throttle is in memory and does not depend on the database backend, and every failed login
# costs an argon2 check: these tests run on SQLite only, with a small allowance.

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def clock(dashboard: Dashboard) -> FakeClock:
    """Make the dashboard throttle 2 failures per 60 s per username (6 per address), on a fake clock."""
    fake = FakeClock()
    dashboard.context.login_throttle = LoginThrottle(max_failures=2, window=60, clock=fake)
    return fake


@sqlite_only
async def test_failed_logins_are_throttled_per_username(
    dashboard: Dashboard, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    wrong = "wrong password!"
    statuses = {}
    for username in ("admin", "nobody"):  # a real user and an unknown one behave the same
        seen = [(await client.get("/api/v1/me", headers=basic(username, wrong))).status_code
                for _ in range(3)]
        statuses[username] = seen
    assert statuses["admin"] == statuses["nobody"] == [401, 401, 429]

    # While throttled even the right password is refused, without being checked.
    right = basic("admin", dashboard.admin_password)
    throttled = await client.get("/api/v1/me", headers=right)
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "too_many_attempts"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    # API tokens are not affected.
    assert (await client.get("/api/v1/me", headers=bearer(dashboard.admin_token))).status_code == 200

    clock.now += 61
    # A success forgets the username's failures: fail, succeed, fail, succeed is never throttled.
    for headers, status in ((basic("admin", wrong), 401), (right, 200), (basic("admin", wrong), 401),
                            (right, 200)):
        assert (await client.get("/api/v1/me", headers=headers)).status_code == status


@sqlite_only
async def test_failed_logins_are_throttled_per_address(client: httpx.AsyncClient, clock: FakeClock) -> None:
    # Six failures spread over six usernames (under each username's limit) exhaust the address.
    for n in range(6):
        response = await client.get("/api/v1/me", headers=basic(f"user{n}", "wrong password!"))
        assert response.status_code == 401
    response = await client.get("/api/v1/me", headers=basic("fresh-user", "wrong password!"))
    assert response.status_code == 429
    assert "Retry-After" in response.headers


@sqlite_only
async def test_wrong_current_password_counts_as_a_failed_login(
    dashboard: Dashboard, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = bearer(dashboard.admin_token)
    for _ in range(2):
        response = await client.post("/api/v1/me/password", headers=token,
                                     json={"current_password": "guess guess guess",
                                           "new_password": NEW_PASSWORD})
        assert response.status_code == 422
    response = await client.post("/api/v1/me/password", headers=token,
                                 json={"current_password": dashboard.admin_password,
                                       "new_password": NEW_PASSWORD})
    assert response.status_code == 429


def test_throttle_retry_after_follows_the_sliding_window() -> None:
    fake = FakeClock()
    throttle = LoginThrottle(max_failures=2, window=100, clock=fake)
    throttle.failed("amy", None)
    fake.now += 30
    throttle.failed("amy", None)
    with pytest.raises(ApiError, match="too many failed logins") as refused:
        throttle.check("amy", None)
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "70"
    fake.now += 70
    throttle.check("amy", None)  # the first failure left the window


def test_an_address_gets_a_larger_allowance_than_a_username() -> None:
    throttle = LoginThrottle(max_failures=2, window=100, address_factor=3, clock=FakeClock())
    for n in range(5):
        throttle.failed(f"user{n}", "192.0.2.1")
    throttle.check("someone", "192.0.2.1")
    throttle.check("someone", "192.0.2.2")
    throttle.failed("user5", "192.0.2.1")
    with pytest.raises(ApiError):
        throttle.check("someone", "192.0.2.1")
    throttle.check("someone", "192.0.2.2")  # another address is not affected


def test_the_throttle_table_is_bounded() -> None:
    throttle = LoginThrottle(max_failures=1, window=100, max_keys=10, clock=FakeClock())
    for n in range(100):
        throttle.failed(f"user{n}", None)
    with pytest.raises(ApiError):
        throttle.check("user99", None)
    throttle.check("user0", None)  # forgotten: the oldest keys went first
