"""A case whose footage has been retrieved, for the release tests: footage recorded by the
real recorder from the sample clip (once per module, `recorded_unit`), a unit on record
with its signing key and the checkpoints it reported, a case raised by an operator and
approved by another person through the case workflow, and the unit's ciphertext with its
signed manifest in the evidence store where a retrieval leaves it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from controller.config import ControllerSettings
from controller.evidence.case_models import CaseRequest
from controller.evidence.cases import CaseWorkflow, mark_retrieved, mark_retrieving
from controller.evidence.store_layout import case_unit_dir
from controller.store import Database
from controller.store.evidence import RetrievalRow
from controller.store.fleet import Unit
from controller.store.reports import CheckpointRecord
from protocol.evidence_keys import EvidencePrivateKey, generate_evidence_key
from tests.harness.recorded_footage import RecordedFootage, record_footage

__all__ = [
    "PASSPHRASE",
    "UNIT",
    "Person",
    "RecordedUnit",
    "RetrievedCase",
    "make_recorded_unit",
    "retrieved_case",
]

UNIT = "cam-07"
PASSPHRASE = "evidence key passphrase for tests"
FIRST, LAST = 2, 4  # the case asks for segments 2 to 4


@dataclass(frozen=True)
class Person:
    username: str
    role: str


@dataclass
class RecordedUnit:
    footage: RecordedFootage
    evidence_key: EvidencePrivateKey
    key_file: Path
    signing_key_file: Path


@dataclass
class RetrievedCase:
    number: str
    case_id: int
    settings: ControllerSettings
    unit: RecordedUnit
    store: Path


def make_recorded_unit(root: Path) -> RecordedUnit:
    evidence_key = generate_evidence_key()
    footage = record_footage(root / "unit", unit_id=UNIT, evidence_key=evidence_key)
    key_file = root / "evidence-private.json"
    key_file.write_bytes(evidence_key.to_encrypted_json(PASSPHRASE))
    signing = Ed25519PrivateKey.generate()
    signing_key_file = root / "controller-signing.key"
    signing_key_file.write_bytes(
        signing.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return RecordedUnit(footage, evidence_key, key_file, signing_key_file)


async def retrieved_case(
    db: Database,
    unit: RecordedUnit,
    store: Path,
    *,
    raised_by: Person,
    approved_by: Person,
    retrieved: bool = True,
) -> RetrievedCase:
    """The case, approved, its footage in `store`, and (when `retrieved`) marked so."""
    settings = ControllerSettings(
        database_url=db.url,
        signing_key_file=unit.signing_key_file,
        evidence={"store_dir": store, "private_key_file": unit.key_file},
    )
    footage = unit.footage
    now = datetime.now(UTC)
    async with db.session() as session:
        session.add(
            Unit(
                unit_id=UNIT,
                registered_at=now - timedelta(days=30),
                signing_public_key=footage.signing_key.public_key().public_bytes_raw().hex(),
            )
        )
        for n, cp in enumerate(footage.reported):
            session.add(
                CheckpointRecord(
                    unit_id=UNIT, digest=f"{n:064x}", count=cp.count, head=cp.head,
                    signed_at=cp.signed_at, key_id=cp.key_id, signature=cp.signature,
                    status="verified", problems=[], claimed=[], message_seq=n + 1,
                    received_at=cp.signed_at,
                )
            )  # fmt: skip
        await session.commit()
    start, end = footage.range_over(FIRST, LAST)
    flow = CaseWorkflow(db, settings=settings.evidence)
    request = CaseRequest(
        case_type="police_request",
        external_ref="URN 01XY2345678",
        requester_name="PC 1234 Ali Khan",
        requester_org="Example Constabulary",
        requester_contact="ali.khan@police.example",
        lawful_basis="Data Protection Act 2018, Schedule 2 paragraph 2 (crime)",
        reason="Assault on the concourse; footage of the suspect crossing it.",
        ranges=[{"unit_id": UNIT, "start": start, "end": end}],  # type: ignore[list-item]
    )
    row = await flow.raise_case(raised_by, request)
    await flow.approve(approved_by, row.number)
    folder = case_unit_dir(store, row.number, UNIT)
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(footage.folder, folder)
    if retrieved:
        async with db.session() as session:
            retrievals = (
                await session.execute(select(RetrievalRow).where(RetrievalRow.case_id == row.id))
            ).scalars()
            for retrieval in retrievals:
                retrieval.status, retrieval.finished_at = "complete", datetime.now(UTC)
            await mark_retrieving(session, row.id, actor="system")
            await mark_retrieved(session, row.id, actor="system")
            await session.commit()
    return RetrievedCase(row.number, row.id, settings, unit, store)
