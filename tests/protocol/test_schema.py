from __future__ import annotations

import json
from pathlib import Path

from protocol.schema import render, schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocol" / "schema"


def test_committed_schemas_are_current() -> None:
    current = schemas()
    committed = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert committed == set(current), "regenerate with: cctv-provision schema protocol/schema"
    for name, doc in current.items():
        assert (SCHEMA_DIR / name).read_text() == render(doc), (
            f"{name} is stale: regenerate with: cctv-provision schema protocol/schema"
        )


def test_schema_describes_kind_and_direction() -> None:
    doc = json.loads((SCHEMA_DIR / "command.json").read_text())
    assert doc["x-direction"] == "to_unit"
    assert "body" in doc["required"]
