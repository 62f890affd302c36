from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings

from protocol import messages as m
from protocol.errors import RefusalReason, SignatureRefused
from protocol.signing import MemorySeenIds, Signer, Verifier, canonical_bytes
from tests.protocol.strategies import actions

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def command(
    unit: str = "cam-01",
    cid: str = "c1",
    expires: timedelta = timedelta(minutes=5),
    issued: datetime = NOW,
    action: object = None,
) -> m.Command:
    body = m.CommandBody(
        command_id=cid,
        unit_id=unit,
        issued_at=issued,
        expires_at=issued + expires,
        action=action or m.SelfTestNow(),
    )
    return Signer(KEY).command(body, seq=1, boot_id="ctl")


def verifier(unit: str = "cam-01", key: Ed25519PrivateKey = KEY) -> Verifier:
    return Verifier(key.public_key(), unit_id=unit, seen=MemorySeenIds(), clock=lambda: NOW)


def refusal(fn: object, *args: object) -> RefusalReason:
    with pytest.raises(SignatureRefused) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.reason


def test_good_command_is_accepted_once() -> None:
    v = verifier()
    cmd = command()
    assert v.command(cmd).command_id == "c1"
    assert refusal(v.command, cmd) is RefusalReason.REPLAYED


def test_each_refusal_has_its_own_reason() -> None:
    good = command()
    tampered = good.model_copy(
        update={
            "body": good.body.model_copy(
                update={
                    "action": m.SetHold(
                        hold_id="h", start=NOW, end=NOW + timedelta(hours=1), reference="x"
                    )
                }
            )
        }
    )
    reasons = {
        "tampered": refusal(verifier().command, tampered),
        "wrong key": refusal(verifier(key=Ed25519PrivateKey.generate()).command, good),
        "expired": refusal(verifier().command, command(issued=NOW - timedelta(hours=1))),
        "future": refusal(verifier().command, command(issued=NOW + timedelta(hours=1))),
        "wrong unit": refusal(verifier("cam-02").command, good),
    }
    assert reasons == {
        "tampered": RefusalReason.BAD_SIGNATURE,
        "wrong key": RefusalReason.UNKNOWN_KEY,
        "expired": RefusalReason.EXPIRED,
        "future": RefusalReason.NOT_YET_VALID,
        "wrong unit": RefusalReason.WRONG_UNIT,
    }
    v = verifier()
    v.command(good)
    assert refusal(v.command, good) is RefusalReason.REPLAYED


def test_forged_key_id_with_foreign_signature_is_bad_signature() -> None:
    forger = Ed25519PrivateKey.generate()
    forged = Signer(forger).command(command().body, seq=1, boot_id="x")
    forged = forged.model_copy(update={"key_id": Signer(KEY).key_id})
    assert refusal(verifier().command, forged) is RefusalReason.BAD_SIGNATURE


def test_envelope_readdressed_to_another_unit_is_refused() -> None:
    cmd = command(unit="cam-02").model_copy(update={"unit_id": "cam-01"})
    assert refusal(verifier("cam-01").command, cmd) is RefusalReason.WRONG_UNIT


def test_signature_survives_the_wire() -> None:
    cmd = command()
    back = m.decode(m.encode(cmd))
    assert isinstance(back, m.Command)
    assert verifier().command(back).command_id == "c1"


def test_domain_separation() -> None:
    auth_body = m.AuthorizationBody(
        authorization_id="a1",
        unit_id="cam-01",
        deployment_id="d1",
        location_name="High St",
        valid_from=NOW,
        valid_until=NOW + timedelta(days=30),
        issued_at=NOW,
    )
    auth = Signer(KEY).authorization(auth_body, seq=1, boot_id="c")
    assert verifier().authorization(auth) == auth_body
    # The same signature cannot be moved onto a revocation body.
    rev_body = m.RevocationBody(
        revocation_id="a1",
        unit_id="cam-01",
        authorization_id="a1",
        deployment_id="d1",
        issued_at=NOW,
    )
    rev = (
        Signer(KEY)
        .revocation(rev_body, seq=2, boot_id="c")
        .model_copy(update={"signature": auth.signature})
    )
    assert refusal(verifier().revocation, rev) is RefusalReason.BAD_SIGNATURE
    assert canonical_bytes(auth_body).startswith(b"cctv-authorization-v1\0")


def test_expired_authorization_is_refused() -> None:
    body = m.AuthorizationBody(
        authorization_id="a1",
        unit_id="cam-01",
        deployment_id="d1",
        location_name="x",
        valid_from=NOW - timedelta(days=2),
        valid_until=NOW - timedelta(days=1),
        issued_at=NOW - timedelta(days=2),
    )
    auth = Signer(KEY).authorization(body, seq=1, boot_id="c")
    assert refusal(verifier().authorization, auth) is RefusalReason.EXPIRED


def test_garbage_signature_is_bad_signature() -> None:
    cmd = command().model_copy(update={"signature": base64.b64encode(b"short").decode()})
    assert refusal(verifier().command, cmd) is RefusalReason.BAD_SIGNATURE
    cmd = command().model_copy(update={"signature": "!!not base64!!"})
    assert refusal(verifier().command, cmd) is RefusalReason.BAD_SIGNATURE


@settings(max_examples=100)
@given(actions())
def test_any_signed_action_verifies_after_the_wire(action: object) -> None:
    cmd = command(action=action)
    back = m.decode(m.encode(cmd))
    assert isinstance(back, m.Command)
    assert verifier().command(back).action == action
