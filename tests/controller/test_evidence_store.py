"""The evidence tables: the migration creates exactly what the models declare, on SQLite
and PostgreSQL, and the constraints hold."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from controller.store import Base, Database, utcnow
from controller.store.evidence import CaseRangeRow, CaseRow
from controller.store.fleet import Unit

EVIDENCE_TABLES = {
    "cases",
    "case_ranges",
    "case_holds",
    "retrievals",
    "retrieved_files",
    "exhibits",
    "releases",
    "review_log",
}


def _tables_in(diff: Any) -> set[str]:
    found: set[str] = set()
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        if isinstance(part, str):
            found.add(part)
        name = getattr(part, "name", None)
        if isinstance(name, str):
            found.add(name)
        table = getattr(part, "table", None)
        if table is not None and isinstance(getattr(table, "name", None), str):
            found.add(table.name)
    return found


async def test_migration_creates_exactly_the_evidence_models(db: Database) -> None:
    assert await db.current_revision() == "0008_reference_snapshots"

    def diffs(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as connection:
        found = await connection.run_sync(diffs)
    ours = [d for d in found if _tables_in(d) & EVIDENCE_TABLES]
    assert ours == []


async def test_case_numbers_are_unique_and_ranges_need_a_known_unit(db: Database) -> None:
    now = utcnow()

    def case(number: str) -> CaseRow:
        return CaseRow(
            number=number,
            case_type="police_request",
            requester_name="PC Example",
            lawful_basis="Prevention and detection of crime",
            reason="Assault reported near the bus station",
            status="requested",
            raised_by="olive",
            raised_at=now,
        )

    async with db.session() as session:
        session.add(Unit(unit_id="cam-1", registered_at=now))
        first = case(f"C-{now.year}-0001")
        session.add(first)
        await session.flush()
        session.add(
            CaseRangeRow(case_id=first.id, unit_id="cam-1", start=now - timedelta(hours=1), end=now)
        )
        await session.commit()
    async with db.session() as session:
        session.add(case(f"C-{now.year}-0001"))
        with pytest.raises(IntegrityError):
            await session.commit()
    async with db.session() as session:
        session.add(
            CaseRangeRow(
                case_id=first.id, unit_id="cam-404", start=now - timedelta(hours=1), end=now
            )
        )
        with pytest.raises(IntegrityError):
            await session.commit()
