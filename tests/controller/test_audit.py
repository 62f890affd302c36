"""The hash-chained audit log on SQLite and PostgreSQL: intact chains verify; an edited,
deleted or inserted row (raw SQL, as an intruder with database access would) is named."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from controller import audit
from controller.cli import app
from controller.store import Database
from provisioning import Fleet

_AT = datetime(2024, 1, 1, tzinfo=UTC)


async def _append(db: Database, n: int, actor: str = "manager:ann") -> None:
    for i in range(n):
        async with db.session() as session:
            await audit.record(
                session,
                actor=actor,
                action="deployment.approve",
                subject=f"deployment:{i}",
                details={"i": i, "note": "ok ✓"},
            )
            await session.commit()


async def test_intact_chain_verifies(db: Database) -> None:
    empty = await audit.verify(db)
    assert empty.ok and empty.rows == 0 and empty.head_hash == audit.GENESIS
    await _append(db, 5)
    result = await audit.verify(db)
    assert result.ok and result.rows == 5 and result.head_seq == 5
    assert str(result).startswith("audit log intact: 5 rows")


async def test_edited_row_is_named(db: Database) -> None:
    await _append(db, 5)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_log SET actor = 'someone:else' WHERE seq = 3"))
    result = await audit.verify(db)
    assert not result.ok and result.bad_seq == 3
    assert "edited" in result.reason


async def test_edited_details_are_detected(db: Database) -> None:
    await _append(db, 3)
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE audit_log SET details_json = :d WHERE seq = 2"),
            {"d": '{"i":1,"note":"no"}'},
        )
    result = await audit.verify(db)
    assert not result.ok and result.bad_seq == 2


async def test_deleted_row_is_named(db: Database) -> None:
    await _append(db, 5)
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    result = await audit.verify(db)
    assert not result.ok and result.bad_seq == 2
    assert "missing" in result.reason


async def test_inserted_rows_are_named(db: Database) -> None:
    await _append(db, 4)
    async with db.engine.begin() as conn:
        head = (await conn.execute(text("SELECT row_hash FROM audit_log WHERE seq = 4"))).scalar()
        # Appended after the head with a plausible prev_hash but an invented row hash.
        await conn.execute(
            text(
                "INSERT INTO audit_log (seq, at, actor, action, subject, details_json, "
                "prev_hash, row_hash) VALUES (5, :at, 'intruder', 'evidence.export', "
                "'unit:cam-01', '{}', :prev, :fake)"
            ),
            {"at": _AT, "prev": head, "fake": "f" * 64},
        )
    result = await audit.verify(db)
    assert not result.ok and result.bad_seq == 5
    # Squeezed in the middle (renumbering the rows after it): the chain breaks there.
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
        await conn.execute(text("UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3"))
        await conn.execute(text("UPDATE audit_log SET seq = seq - 99 WHERE seq >= 103"))
        row2 = (await conn.execute(text("SELECT row_hash FROM audit_log WHERE seq = 2"))).scalar()
        await conn.execute(
            text(
                "INSERT INTO audit_log (seq, at, actor, action, subject, details_json, "
                "prev_hash, row_hash) VALUES (3, :at, 'intruder', 'x', 'y', '{}', :prev, :h)"
            ),
            {"at": _AT, "prev": row2, "h": "0" * 64},
        )
    result = await audit.verify(db)
    assert not result.ok and result.bad_seq == 3


async def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    """Appends from many sessions at once never fork the chain (SQLite: one writer;
    PostgreSQL: advisory lock)."""
    await asyncio.gather(*(_append(db, 5, actor=f"operator:{i}") for i in range(6)))
    result = await audit.verify(db)
    assert result.ok and result.rows == 30


def test_cli_audit_verify_exit_codes(tmp_path: Path, fleet: Fleet) -> None:
    config = tmp_path / "controller.toml"
    config.write_text(f'database_url = "sqlite+aiosqlite:///{tmp_path / "c.db"}"\n')
    runner = CliRunner()
    imported = runner.invoke(
        app, ["units", "import", "--fleet", str(fleet.root), "-c", str(config)]
    )
    assert imported.exit_code == 0, imported.output
    assert "added 3" in imported.output
    listed = runner.invoke(app, ["units", "--json", "-c", str(config)])
    assert listed.exit_code == 0
    assert [u["unit_id"] for u in json.loads(listed.output)["units"]] == [
        "cam-01",
        "cam-02",
        "cam-03",
    ]
    ok = runner.invoke(app, ["audit", "verify", "-c", str(config)])
    assert ok.exit_code == 0 and "intact: 1 rows" in ok.output
    with sqlite3.connect(tmp_path / "c.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    bad = runner.invoke(app, ["audit", "verify", "-c", str(config)])
    assert bad.exit_code == 1
    assert "TAMPERED at row 1" in bad.output
    missing = runner.invoke(app, ["audit", "verify", "-c", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "no such settings file" in missing.output


async def test_entries_filter_by_family_unit_and_time(db: Database) -> None:
    now = datetime.now(UTC)
    rows = [
        ("callout.raised", "callout:7", {"unit": "cam-01"}, now - timedelta(days=2)),
        ("callout.acknowledged", "callout:7", {"unit": "cam-01"}, now - timedelta(hours=1)),
        ("command.selftest_now", "unit:cam-02", {}, now - timedelta(hours=1)),
        ("deployment.approve", "deployment:d1", {"unit_id": "cam-02"}, now),
        ("unit.online", "unit:cam-1", {}, now),  # not cam-10's, not cam-1's neighbour's
        ("callouts_x.odd", "unit:cam_01", {"unit": "cam%01"}, now),
    ]
    async with db.session() as session:
        for action, subject, details, at in rows:
            await audit.record(
                session, actor="ann", action=action, subject=subject, details=details, at=at
            )
        await session.commit()

    async def actions(**filters: Any) -> list[str]:
        return [r.action for r in (await audit.entries(db, limit=50, **filters)).records]

    assert await actions(family="callout") == ["callout.acknowledged", "callout.raised"]
    assert await actions(unit="cam-01") == ["callout.acknowledged", "callout.raised"]
    assert await actions(unit="cam-02") == ["deployment.approve", "command.selftest_now"]
    assert await actions(unit="cam_01") == ["callouts_x.odd"]  # "_" is not a wildcard
    assert await actions(unit="cam%01") == ["callouts_x.odd"]
    day_ago = now - timedelta(days=1)
    assert await actions(family="callout", since=day_ago) == ["callout.acknowledged"]
    assert await actions(until=day_ago) == ["callout.raised"]
    assert await actions(actor="ann", family="command") == ["command.selftest_now"]
    actions_seen, actors_seen = await audit.names(db)
    assert actors_seen == ["ann"] and "deployment.approve" in actions_seen
