"""The table of self-test checks, and the `not_assessed` verdict on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from protocol.checks import CHECK_INFO, VERDICTS, CheckName
from protocol.errors import MalformedMessage
from protocol.messages import PROTOCOL_VERSION, SelfTestReport, decode, encode


def test_every_check_has_a_title_what_it_looks_at_and_its_fault() -> None:
    assert set(CHECK_INFO) == set(CheckName)
    for name, info in CHECK_INFO.items():
        assert info.title and info.looks_at.endswith(".") and info.fault is not None, name
    assert VERDICTS == ("pass", "warn", "fail", "not_assessed")


def _report(check_verdict: str, verdict: str = "pass", v: str = PROTOCOL_VERSION) -> bytes:
    now = datetime.now(UTC)
    message = SelfTestReport(
        unit_id="cam-01",
        seq=1,
        sent_at=now,
        boot_id="b1",
        report_id="r1",
        trigger="schedule",
        started_at=now,
        finished_at=now,
        verdict="pass",
        checks=[],
    )
    doc = json.loads(encode(message))
    doc["v"], doc["verdict"] = v, verdict
    doc["checks"] = [{"name": "clock", "verdict": check_verdict, "value": None, "unit": "s"}]
    return json.dumps(doc).encode()


def test_a_check_may_be_not_assessed_but_a_report_is_pass_warn_or_fail() -> None:
    decoded = decode(_report("not_assessed"))
    assert isinstance(decoded, SelfTestReport)
    assert decoded.checks[0].verdict == "not_assessed" and decoded.verdict == "pass"
    with pytest.raises(MalformedMessage, match="verdict"):
        decode(_report("pass", verdict="not_assessed"))
    # a unit before 1.2 said warn for a check that could not judge: still read
    older = decode(_report("warn", v="1.1"))
    assert isinstance(older, SelfTestReport) and older.checks[0].verdict == "warn"
