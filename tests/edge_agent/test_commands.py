from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.commands import CommandFailed, CommandProcessor
from edge_agent.seen import DurableSeenIds
from protocol import messages as m
from protocol.signing import Signer, Verifier

KEY = Ed25519PrivateKey.generate()


def cmd(
    cid: str,
    action: Any = None,
    unit: str = "cam-01",
    key: Ed25519PrivateKey = KEY,
    expires: timedelta = timedelta(minutes=5),
) -> m.Command:
    now = datetime.now(UTC)
    body = m.CommandBody(
        command_id=cid,
        unit_id=unit,
        issued_at=now,
        expires_at=now + expires,
        action=action or m.SelfTestNow(),
    )
    return Signer(key).command(body, seq=1, boot_id="ctl")


async def test_acks_each_step_and_refuses_with_reasons(tmp_path: Path) -> None:
    acks: list[tuple[str, str, str]] = []

    async def send_ack(cid: str, status: str, reason: str, result: dict[str, Any]) -> None:
        acks.append((cid, status, reason))

    async def selftest(body: m.CommandBody) -> dict[str, Any]:
        return {"verdict": "pass"}

    async def hold(body: m.CommandBody) -> dict[str, Any]:
        raise CommandFailed("no footage in that range")

    seen = DurableSeenIds(tmp_path / "seen.sqlite")
    proc = CommandProcessor(
        Verifier(KEY.public_key(), unit_id="cam-01", seen=seen),
        send_ack=send_ack,
        actions={"selftest_now": selftest, "set_hold": hold},
    )
    now = datetime.now(UTC)
    assert await proc.handle(cmd("ok")) == "done"
    assert await proc.handle(cmd("ok")) == "rejected"  # replay
    assert await proc.handle(cmd("forged", key=Ed25519PrivateKey.generate())) == "rejected"
    assert await proc.handle(cmd("other", unit="cam-02")) == "rejected"
    assert await proc.handle(cmd("late", expires=timedelta(seconds=-1))) == "rejected"
    assert (
        await proc.handle(
            cmd(
                "h",
                m.SetHold(hold_id="h1", start=now, end=now + timedelta(1), reference="crime ref 1"),
            )
        )
        == "failed"
    )
    assert await proc.handle(cmd("nope", m.ReleaseHold(hold_id="h1"))) == "rejected"
    assert acks == [
        ("ok", "accepted", ""),
        ("ok", "done", ""),
        ("ok", "rejected", "replayed: command ok was already received"),
        ("forged", "rejected", acks[3][2]),
        ("other", "rejected", "wrong_unit: addressed to 'cam-02', this unit is 'cam-01'"),
        ("late", "rejected", acks[5][2]),
        ("h", "accepted", ""),
        ("h", "failed", "no footage in that range"),
        ("nope", "rejected", "unsupported action 'release_hold'"),
    ]
    assert acks[3][2].startswith("unknown_key:")
    assert acks[5][2].startswith("expired:")
    seen.close()


async def test_replay_is_refused_after_a_restart(tmp_path: Path) -> None:
    statuses: list[str] = []

    async def send_ack(cid: str, status: str, reason: str, result: dict[str, Any]) -> None:
        statuses.append(status)

    async def selftest(body: m.CommandBody) -> dict[str, Any]:
        return {}

    message = cmd("once")
    for _ in range(2):  # two agent lifetimes over the same data dir
        seen = DurableSeenIds(tmp_path / "seen.sqlite")
        proc = CommandProcessor(
            Verifier(KEY.public_key(), unit_id="cam-01", seen=seen),
            send_ack=send_ack,
            actions={"selftest_now": selftest},
        )
        await proc.handle(message)
        seen.close()
    assert statuses == ["accepted", "done", "rejected"]
