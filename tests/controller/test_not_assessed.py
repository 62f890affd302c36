"""'Not assessed' is its own, neutral state: a self-test check that could not judge (no time
server, no temperature sensor) counts neither for nor against the unit, so a healthy unit
reads healthy and the pass rate counts only what was assessed; a site or contract that
requires a check makes it a warning when it is not assessed. Reports travel from unit
clients through the real broker into the real controller, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.fleet import fleet_overview
from controller.fleet.kpis import kpi_report
from controller.fleet.selftests import read_report
from controller.store import Database
from controller.store.fleet import SelfTestRecord, Unit, UnitStatus
from protocol.faults import FaultCode
from protocol.messages import CheckResult
from tests.controller.conftest import UnitVoice, eventually, running_controller, send
from tests.harness import MosquittoBroker, mqtt_client

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long test password"


def _checks(*, clock: str = "not_assessed", storage: str = "pass") -> list[CheckResult]:
    return [
        CheckResult(name="camera_signal", verdict="pass", value=10.0, threshold=5.0, unit="fps",
                    message="10.0 fps of 10.0 expected", fault=FaultCode.CAMERA_NO_SIGNAL),
        CheckResult(name="image_black", verdict="pass", value=96.0, threshold=25.0, unit="luma",
                    message="mean luminance 96/255", fault=FaultCode.IMAGE_BLACK),
        CheckResult(name="storage", verdict=storage, value=62.5 if storage == "pass" else 12.0,
                    threshold=5.0, unit="%", message="free space", fault=FaultCode.STORAGE_LOW),
        CheckResult(name="clock", verdict=clock, value=None if clock == "not_assessed" else 0.01,
                    threshold=5.0, unit="s", fault=FaultCode.CLOCK_DRIFT,
                    message="not assessed: no NTP server configured"
                    if clock == "not_assessed" else "clock behind NTP by 0.010 s"),
        CheckResult(name="temperature", verdict="not_assessed", value=None, threshold=85.0,
                    unit="C", message="not assessed: no readable thermal zone",
                    fault=FaultCode.OVER_TEMPERATURE),
    ]  # fmt: skip


def _legacy_checks() -> list[CheckResult]:
    """A unit before protocol 1.2: a check that could not judge said `warn`."""
    return [
        CheckResult(name="storage", verdict="pass", value=62.5, threshold=5.0, unit="%"),
        CheckResult(name="clock", verdict="warn", value=None, threshold=5.0, unit="s",
                    message="not assessed: no NTP server configured"),
    ]  # fmt: skip


async def _records(db: Database, unit_id: str) -> list[SelfTestRecord]:
    async with db.session() as session:
        rows = await session.execute(
            select(SelfTestRecord)
            .where(SelfTestRecord.unit_id == unit_id)
            .order_by(SelfTestRecord.finished_at)
        )
        return list(rows.scalars())


def test_reading_a_report_counts_only_what_was_assessed() -> None:
    checks = [c.model_dump(mode="json") for c in _checks()]
    healthy = read_report(checks)
    assert healthy.verdict == "pass" and healthy.not_assessed == ["clock", "temperature"]
    required = read_report(checks, frozenset({"clock"}))
    assert required.verdict == "warn" and required.required_missing == ["clock"]
    absent = read_report(checks, frozenset({"ups"}))  # required, not even in the report
    assert absent.verdict == "warn" and absent.required_missing == ["ups"]
    assert read_report([c.model_dump(mode="json") for c in _legacy_checks()]).verdict == "pass"
    nothing = [c for c in checks if c["verdict"] == "not_assessed"]
    assert read_report(nothing).verdict == "warn"  # nothing assessed shows nothing working
    failing = [c.model_dump(mode="json") for c in _checks(storage="fail")]
    assert read_report(failing).verdict == "fail"


async def test_a_unit_whose_assessed_checks_pass_is_healthy(
    db: Database, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    topics = broker.fleet.topics
    settings = controller_settings(broker, sites={"Depot yard": {"required_checks": ["clock"]}})
    async with running_controller(settings, db):
        async with db.session() as session:
            depot = await session.get(Unit, "cam-02")
            assert depot is not None
            depot.site = "Depot yard"
            await session.commit()
        cam1, cam2 = UnitVoice("cam-01"), UnitVoice("cam-02")
        async with mqtt_client(broker, "cam-01") as one, mqtt_client(broker, "cam-02") as two:
            await send(one, topics, cam1.state(True))
            await send(two, topics, cam2.state(True))
            await send(one, topics, cam1.heartbeat())
            await send(two, topics, cam2.heartbeat())
            # Each unit: a healthy report (clock and temperature not assessed), then one
            # from an older agent, then one with a real warning (storage low).
            base = datetime.now(UTC) - timedelta(minutes=30)
            for i, checks in enumerate((_checks(), _legacy_checks(), _checks(storage="warn"))):
                at = base + timedelta(minutes=10 * i)
                for client, voice in ((one, cam1), (two, cam2)):
                    report = voice.selftest(checks, started_at=at, finished_at=at)
                    # the unit's own verdict over its assessed checks
                    report = report.model_copy(update={"verdict": "warn" if i == 2 else "pass"})
                    await send(client, topics, report)
            await eventually(lambda: _count(db, 6), within=10)

    first, legacy, warned = await _records(db, "cam-01")
    assert (first.verdict, legacy.verdict, warned.verdict) == ("pass", "pass", "warn")
    depot_rows = await _records(db, "cam-02")
    # The depot requires the clock check: not assessed there is a warning.
    assert [r.verdict for r in depot_rows] == ["warn", "warn", "warn"]

    async with db.session() as session:
        overview = await fleet_overview(session)
        status = await session.get(UnitStatus, "cam-01")
        kpi = await kpi_report(session, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
    assert status is not None and status.last_selftest_verdict == "warn"  # the last report
    units = {u.unit_id: u for u in overview.units}
    assert units["cam-01"].state == "ok" and units["cam-01"].reasons == []
    # Pass rate: of 6 reports, cam-01's first two passed (only assessed checks counted);
    # the depot's all warn (its required clock was never assessed).
    assert (kpi.selftests, kpi.selftests_passed, kpi.selftests_warned) == (6, 2, 4)
    assert kpi.selftest_pass_rate == 2 / 6


async def _count(db: Database, wanted: int) -> bool:
    async with db.session() as session:
        rows = await session.execute(select(SelfTestRecord.id))
        return len(rows.all()) >= wanted


async def test_the_unit_page_shows_not_assessed_as_neutral(db: Database) -> None:
    accounts = Accounts(db, FAST)
    await accounts.add_user("fixer1", "contractor", PASSWORD, contractor="Acme", actor="t")
    now = datetime.now(UTC)
    async with db.session() as session:
        session.add(Unit(unit_id="cam-03", contractor="Acme", site="High Street",
                         registered_at=now - timedelta(days=1)))  # fmt: skip
        await session.flush()
        session.add(UnitStatus(unit_id="cam-03", online=True, last_seen_at=now,
                               last_selftest_at=now, last_selftest_verdict="pass"))  # fmt: skip
        session.add(
            SelfTestRecord(
                unit_id="cam-03",
                report_id="r-1",
                trigger="schedule",
                command_id=None,
                started_at=now,
                finished_at=now,
                verdict="pass",
                checks=[c.model_dump(mode="json") for c in _checks()],
                received_at=now,
            )
        )
        await session.commit()
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (
            await c.post("/api/login", json={"username": "fixer1", "password": PASSWORD})
        ).status_code == 200
        page = await c.get("/units/cam-03")
    assert page.status_code == 200
    html = page.text
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert re.search(r'<span class="badge not_assessed">not assessed</span>', html)
    assert 'class="badge warn"' not in html  # no warning anywhere on a healthy unit
    for shown in ("Clock", "Temperature", "Picture brightness", "96 of 255", "not measured"):
        assert shown in words, shown
    # nothing measured: the words say so, never a bare unit
    temperature = re.search(
        r'<th scope="row">Temperature</th>\s*<td>(.*?)</td>\s*<td class="num">(.*?)</td>', html
    )
    assert temperature is not None, html
    assert "not assessed" in temperature.group(1) and temperature.group(2) == "not measured"
    assert "not_assessed" not in words and "image_black" not in words
