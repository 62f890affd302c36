"""JSON Schema export of every message, so an agent could be written in another language.

The committed copies under `protocol/schema/` are checked against the models by the tests;
regenerate them with `cctv-provision schema protocol/schema`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from protocol.messages import KINDS, PROTOCOL_VERSION, AnyMessage

__all__ = ["export_schemas", "schemas"]


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, one per message kind plus the union."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in sorted(KINDS.items()):
        doc = model.model_json_schema()
        doc["$id"] = f"cctv/v{PROTOCOL_VERSION}/{kind}.json"
        doc["x-channel"] = model.channel.value
        doc["x-direction"] = model.channel.direction.value
        out[f"{kind}.json"] = doc
    union = TypeAdapter(AnyMessage).json_schema()
    union["$id"] = f"cctv/v{PROTOCOL_VERSION}/message.json"
    union["title"] = "Message"
    out["message.json"] = union
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def export_schemas(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in schemas().items():
        path = outdir / name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written
