"""The store: migrations on SQLite and PostgreSQL match the models; SQLite pragmas; UTC
times; settings loading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from controller.config import ControllerSettings
from controller.errors import ConfigError, StoreError
from controller.store import Base, Database
from controller.store.fleet import Unit

OURS = {
    "units",
    "unit_status",
    "seq_gaps",
    "quarantine",
    "selftest_reports",
    "power_readings",
    "unit_faults",
    "callouts",
    "callout_events",
    "notifications",
    "audit_log",
    "reference_snapshots",
}


def _table_of(diff: Any) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if name in OURS:
            return str(name)
        if isinstance(part, str) and part in OURS:
            return part
    return None


async def test_migrations_create_exactly_the_models(db: Database) -> None:
    await db.migrate()  # a second run is a no-op
    revision = await db.current_revision()
    assert revision is not None and revision >= "0001_fleet"

    def diffs(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with db.engine.connect() as connection:
        found = await connection.run_sync(diffs)
    mine = [d for d in found if _table_of(d) in OURS]
    assert mine == []


async def test_times_come_back_aware_utc(db: Database) -> None:
    local = datetime(2024, 6, 7, 17, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    async with db.session() as session:
        session.add(Unit(unit_id="cam-77", registered_at=local))
        await session.commit()
    async with db.session() as session:
        unit = await session.get(Unit, "cam-77", populate_existing=True)
    assert unit is not None
    assert unit.registered_at == local and unit.registered_at.tzinfo == UTC
    async with db.session() as session:
        session.add(Unit(unit_id="cam-78", registered_at=datetime(2024, 1, 1)))
        with pytest.raises(Exception, match="naive datetime"):
            await session.commit()


async def test_sqlite_runs_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'c.db'}")
    try:
        await db.migrate()
        async with db.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await db.dispose()


def test_bad_database_url_is_one_sentence() -> None:
    with pytest.raises(StoreError, match="use sqlite"):
        Database("mysql://x/y")


def test_settings_from_toml_with_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(
        'database_url = "sqlite+aiosqlite:///c.db"\nfleet_dir = "/srv/fleet"\n'
        '[broker]\nhost = "broker.example"\n'
        '[contracts."Acme Ltd"]\nhours = "Mon-Fri 08:00-18:00"\nemails = ["d@acme.example"]\n'
    )
    monkeypatch.setenv("CCTV_CONTROLLER_BROKER__PORT", "18883")
    settings = ControllerSettings.load(path)
    assert settings.broker.host == "broker.example" and settings.broker.port == 18883
    assert settings.broker.cert_file == Path("/srv/fleet/controller/controller.crt")
    assert settings.signing_key_file == Path("/srv/fleet/controller/signing.key")
    assert settings.contract("Acme Ltd").emails == ["d@acme.example"]
    assert settings.contract("Nobody").hours == "24x7"
    path.write_text("offline_timeout_s = -5\n")
    with pytest.raises(ConfigError, match="offline_timeout_s"):
        ControllerSettings.load(path)
    path.write_text('[contracts.X]\nhours = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"contracts\.X\.hours"):
        ControllerSettings.load(path)
    with pytest.raises(ConfigError, match="no such settings file"):
        ControllerSettings.load(tmp_path / "missing.toml")
