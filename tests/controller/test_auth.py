"""Sign-in, sessions, CSRF, tokens, the login rate limit and the password store, against a
real database (SQLite and PostgreSQL through the `db` fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from controller.accounts import (
    AccountError,
    Accounts,
    AuthSettings,
    LoginRefused,
    Role,
    device_cookies,
)
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.store.audit import AuditEntry
from controller.store.base import Base, Database, utcnow
from controller.store.users import SessionRow, UnknownUser, UserRow, purge_login_records

# Cheap Argon2 so the suite stays fast; the production defaults are checked separately.
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def accounts(db: Database) -> Accounts:
    accounts = Accounts(db, FAST)
    await accounts.add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    await accounts.add_user(
        "carl", "contractor", PASSWORD, contractor="Acme Maintenance Ltd", actor="test"
    )
    return accounts


def _client(db: Database, settings: AuthSettings = FAST) -> httpx.AsyncClient:
    app = create_app(ControllerSettings(database_url=db.url), db, auth=settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(db: Database, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(db) as client:
        yield client


async def _login(client: httpx.AsyncClient, username: str = "mia") -> str:
    response = await client.post("/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def _actions(db: Database) -> list[str]:
    async with db.session() as s:
        return list((await s.execute(select(AuditEntry.action).order_by(AuditEntry.seq))).scalars())


async def test_login_sets_a_hardened_cookie_and_the_session_is_stored_hashed(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await client.post("/api/login", json={"username": "Mia", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "mia" and body["role"] == "manager"
    cookie, device = response.headers.get_list("set-cookie")
    assert cookie.startswith("cctv_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    # the browser is now known for mia (see test_login_lockout.py)
    assert device.startswith(device_cookies.cookie_name("mia") + "=")
    assert "HttpOnly" in device and "SameSite=strict" in device
    assert f"Max-Age={FAST.device_seconds}" in device
    session_id = client.cookies["cctv_session"]
    assert len(session_id) >= 40
    async with db.session() as s:
        stored = list((await s.execute(select(SessionRow.session_hash))).scalars())
    assert stored == [hashlib.sha256(session_id.encode()).hexdigest()]
    me = await client.get("/api/me")
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]
    assert await _actions(db) == ["user.add", "user.add", "auth.login"]


async def test_wrong_password_and_unknown_user_read_the_same_and_are_audited(
    client: httpx.AsyncClient, db: Database
) -> None:
    wrong = await client.post("/api/login", json={"username": "mia", "password": "nope" * 4})
    typed = "my-secret-typed-as-username"
    unknown = await client.post("/api/login", json={"username": typed, "password": PASSWORD})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json() == {"detail": "Wrong username or password."}
        assert "set-cookie" not in response.headers
    assert (await client.get("/api/me")).status_code == 401
    assert (await _actions(db))[-2:] == ["auth.login_failed", "auth.login_failed"]
    async with db.session() as s:
        last = (await s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc()))).scalars()
        failed_unknown, failed_mia = list(last)[:2]
    # a mistyped secret never reaches the permanent audit chain
    assert failed_unknown.subject == "user:(unknown)" and failed_unknown.actor == "anonymous"
    assert typed not in failed_unknown.details_json
    assert failed_mia.subject == "user:mia"
    assert json.loads(failed_mia.details_json)["reason"] == "bad_password"


async def test_not_signed_in_is_a_sentence(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/units")
    assert response.status_code == 401
    assert response.json() == {"detail": "Sign in first: this needs a logged-in user."}


async def test_rate_limit_per_username_then_429_even_with_the_right_password(
    client: httpx.AsyncClient, db: Database
) -> None:
    for _ in range(FAST.max_failures_per_user):
        bad = await client.post("/api/login", json={"username": "mia", "password": "x" * 12})
        assert bad.status_code == 401
    blocked = await client.post("/api/login", json={"username": "mia", "password": PASSWORD})
    assert blocked.status_code == 429
    detail = blocked.json()["detail"]
    assert detail.startswith("Too many failed logins") and "try again after" in detail
    assert 14 * 60 <= int(blocked.headers["Retry-After"]) <= 15 * 60
    # another user is not locked out by mia's failures (same address, under its own limit)
    assert (
        await client.post("/api/login", json={"username": "carl", "password": PASSWORD})
    ).is_success
    assert (await _actions(db))[-2:] == ["auth.login_refused", "auth.login"]
    async with db.session() as s:
        outcomes = (
            await s.execute(text("SELECT outcome FROM login_attempts ORDER BY id"))
        ).scalars()
        assert list(outcomes) == ["bad_password"] * 5 + ["rate_limited", "success"]


async def test_rate_limit_per_client_address(db: Database, accounts: Accounts) -> None:
    settings = FAST.model_copy(update={"max_failures_per_client": 3})
    async with _client(db, settings) as client:
        for name in ("a1", "a2", "a3"):
            response = await client.post(
                "/api/login", json={"username": name, "password": "x" * 12}
            )
            assert response.status_code == 401
        blocked = await client.post("/api/login", json={"username": "mia", "password": PASSWORD})
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers


async def test_a_successful_login_resets_the_username_count(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(FAST.max_failures_per_user - 1):
        await client.post("/api/login", json={"username": "mia", "password": "x" * 12})
    await _login(client)
    for _ in range(FAST.max_failures_per_user - 1):
        await client.post("/api/login", json={"username": "mia", "password": "x" * 12})
    assert (
        await client.post("/api/login", json={"username": "mia", "password": PASSWORD})
    ).is_success


async def test_csrf_is_required_for_unsafe_cookie_requests(
    client: httpx.AsyncClient, db: Database
) -> None:
    token = await _login(client)
    missing = await client.post("/api/logout")
    wrong = await client.post("/api/logout", headers={"X-CSRF-Token": "0" * 64})
    for response in (missing, wrong):
        assert response.status_code == 403
        assert "CSRF" in response.json()["detail"]
    assert (await client.get("/api/me")).status_code == 200  # still signed in
    # the form field works like the header (a server-rendered form)
    done = await client.post("/api/logout", data={"csrf_token": token})
    assert done.status_code == 204
    assert (await client.get("/api/me")).status_code == 401
    assert (await _actions(db))[-1] == "auth.logout"


async def test_a_cookie_replayed_after_logout_is_refused(client: httpx.AsyncClient) -> None:
    token = await _login(client)
    cookie = client.cookies["cctv_session"]
    assert (await client.post("/api/logout", headers={"X-CSRF-Token": token})).status_code == 204
    client.cookies.set("cctv_session", cookie)
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert response.json()["detail"] == "Your session has ended; sign in again."


async def test_session_expires(db: Database, accounts: Accounts) -> None:
    settings = FAST.model_copy(update={"session_hours": 1.5 / 3600})
    async with _client(db, settings) as client:
        await _login(client)
        assert (await client.get("/api/me")).status_code == 200
        await asyncio.sleep(1.6)
        assert (await client.get("/api/me")).status_code == 401


async def test_bearer_token_works_without_csrf_and_is_stored_hashed(
    client: httpx.AsyncClient, accounts: Accounts, db: Database
) -> None:
    token = await accounts.create_token("mia", name="nightly report", actor="test")
    assert token.startswith("cctv_")
    headers = {"Authorization": f"Bearer {token}"}
    me = await client.get("/api/me", headers=headers)
    assert me.status_code == 200 and me.json()["username"] == "mia"
    assert me.json()["csrf_token"] == ""
    # an unsafe request with a token needs no CSRF token (no cookie is involved)
    assert (await client.get("/api/users", headers=headers)).status_code == 200
    async with db.session() as s:
        stored = (await s.execute(text("SELECT token_hash FROM api_tokens"))).scalar_one()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    bad = await client.get("/api/me", headers={"Authorization": "Bearer cctv_forged"})
    assert bad.status_code == 401
    assert bad.json()["detail"] == "The API token is unknown, revoked or expired."
    assert (await accounts.revoke_token("mia", token[:12], actor="test")) == 1
    assert (await client.get("/api/me", headers=headers)).status_code == 401


async def test_a_disabled_user_cannot_log_in_and_loses_sessions_and_tokens(
    client: httpx.AsyncClient, accounts: Accounts, db: Database
) -> None:
    await _login(client, "carl")
    token = await accounts.create_token("carl", name="script", actor="test")
    await accounts.set_disabled("carl", True, actor="test")
    assert (await client.get("/api/me")).status_code == 401
    assert (
        await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 401
    refused = await client.post("/api/login", json={"username": "carl", "password": PASSWORD})
    assert refused.status_code == 401
    assert refused.json()["detail"] == "This account is disabled; ask a manager to enable it."
    await accounts.set_disabled("carl", False, actor="test")
    assert (
        await client.post("/api/login", json={"username": "carl", "password": PASSWORD})
    ).is_success
    assert (
        await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 401


async def test_only_argon2_hashes_are_stored_and_rehashed_when_parameters_change(
    db: Database, accounts: Accounts
) -> None:
    async with db.session() as s:
        first = (await s.execute(select(UserRow).where(UserRow.username == "mia"))).scalar_one()
    assert first.password_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    stronger = FAST.model_copy(update={"argon2_memory_kib": 2048, "argon2_time_cost": 2})
    async with _client(db, stronger) as client:
        token = await _login(client)
        session_id = client.cookies["cctv_session"]
        device = client.cookies[device_cookies.cookie_name("mia")]
    async with db.session() as s:
        second = (await s.execute(select(UserRow).where(UserRow.username == "mia"))).scalar_one()
        assert second.password_hash.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
        assert second.password_changed_at == first.password_changed_at  # same password
        # no secret in clear anywhere in the database
        for table in Base.metadata.sorted_tables:
            rows = (await s.execute(select(table))).all()
            dump = json.dumps([list(r) for r in rows], default=str)
            for secret in (PASSWORD, session_id, token, device, device.split(".")[0]):
                assert secret not in dump, f"{table.name} holds a secret in clear"


def test_production_argon2_defaults_follow_rfc_9106() -> None:
    accounts = Accounts(None, None)  # type: ignore[arg-type]  # hashing needs no database
    assert accounts.passwords.hasher.hash("x" * 12).startswith("$argon2id$v=19$m=65536,t=3,p=4$")


async def test_contractor_must_name_the_company(accounts: Accounts) -> None:
    with pytest.raises(AccountError, match="needs their company"):
        await accounts.add_user("c2", "contractor", PASSWORD, contractor=None, actor="test")
    with pytest.raises(AccountError, match="only a contractor"):
        await accounts.add_user("m2", "manager", PASSWORD, contractor="Acme", actor="test")
    with pytest.raises(AccountError, match="12 to 1024"):
        await accounts.add_user("m3", "manager", "short", contractor=None, actor="test")


def test_user_cli_adds_lists_disables_and_issues_a_token_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.accounts.cli import user_app

    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CCTV_CONTROLLER_DATABASE_URL", url)
    monkeypatch.setenv("CCTV_USER_PASSWORD", PASSWORD)
    runner = CliRunner()
    added = runner.invoke(
        user_app, ["add", "acme1", "--role", "contractor", "--contractor", "Acme Ltd"]
    )
    assert added.exit_code == 0, added.output
    again = runner.invoke(user_app, ["add", "acme1", "--role", "contractor", "--contractor", "X"])
    assert again.exit_code == 1 and "already exists" in again.output
    bad_role = runner.invoke(user_app, ["add", "bob", "--role", "admin"])
    assert bad_role.exit_code == 2
    listed = runner.invoke(user_app, ["list", "--json"])
    assert listed.exit_code == 0
    [row] = json.loads(listed.stdout)
    assert row["username"] == "acme1" and row["contractor"] == "Acme Ltd"
    created = runner.invoke(user_app, ["token", "create", "acme1", "--name", "ci"])
    assert created.exit_code == 0
    token = created.stdout.strip()
    assert token.startswith("cctv_") and len(token) > 40

    async def status() -> int:
        async with Database(url) as db, _client(db) as client:
            response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            return response.status_code

    assert asyncio.run(status()) == 200
    assert runner.invoke(user_app, ["disable", "acme1"]).exit_code == 0
    assert asyncio.run(status()) == 401
    unknown = runner.invoke(user_app, ["disable", "nobody"])
    assert unknown.exit_code == 1 and "no user named 'nobody'" in unknown.output


async def test_old_login_records_are_purged(client: httpx.AsyncClient, db: Database) -> None:
    await client.post("/api/login", json={"username": "mia", "password": "x" * 12})
    await _login(client)
    async with db.session() as s:
        await purge_login_records(s, before=utcnow() - timedelta(days=1))
        await s.commit()
        assert (await s.execute(text("SELECT count(*) FROM login_attempts"))).scalar_one() == 2
        await purge_login_records(s, before=utcnow() + timedelta(days=1))
        await s.commit()
        assert (await s.execute(text("SELECT count(*) FROM login_attempts"))).scalar_one() == 0
        assert (await s.execute(text("SELECT count(*) FROM user_sessions"))).scalar_one() == 0


async def test_a_manager_changes_a_user_and_the_last_manager_stays(
    db: Database, accounts: Accounts
) -> None:
    changed = await accounts.change_user("carl", role="operator", contractor=None, actor="mia")
    assert changed.role is Role.OPERATOR and changed.contractor is None
    with pytest.raises(AccountError, match="already has that role"):
        await accounts.change_user("carl", role="operator", contractor=None, actor="mia")
    with pytest.raises(AccountError, match="your own role"):
        await accounts.change_user("mia", role="auditor", contractor=None, actor="mia")
    with pytest.raises(AccountError, match="only active manager"):
        await accounts.change_user("mia", role="auditor", contractor=None, actor="cli:root")
    with pytest.raises(AccountError, match="your own account"):
        await accounts.set_disabled("mia", True, actor="mia")
    with pytest.raises(AccountError, match="only active manager"):
        await accounts.set_disabled("mia", True, actor="cli:root")
    await accounts.add_user("max", "manager", PASSWORD, contractor=None, actor="mia")
    await accounts.set_disabled("mia", True, actor="max")  # another manager is left
    await accounts.set_disabled("mia", False, actor="max")

    # A new password ends the user's sessions; the old password no longer signs in.
    session = (await accounts.logins.login("carl", PASSWORD, client="t")).session_id
    await accounts.set_password("carl", "a brand new password", actor="mia")
    assert await accounts.logins.user_for_session(session) is None
    with pytest.raises(LoginRefused):
        await accounts.logins.login("carl", PASSWORD, client="t")
    assert (await accounts.logins.login("carl", "a brand new password", client="t")).user
    with pytest.raises(AccountError, match="12 to 1024"):
        await accounts.set_password("carl", "short", actor="mia")
    with pytest.raises(UnknownUser):
        await accounts.set_password("nobody", "a brand new password", actor="mia")
    # Every change audited, none of the refused ones.
    assert [a for a in await _actions(db) if a.startswith("user.")] == [
        "user.add", "user.add",  # mia and carl, by the fixture
        "user.change", "user.add", "user.disable", "user.enable", "user.password_set",
    ]  # fmt: skip
