"""A stored PIA drawn for reading: every section with its label, nested lists as tables or
blocks, computed risk levels as badges, and the privacy masks drawn over a grid."""

from __future__ import annotations

import enum
from datetime import date, datetime
from html import escape
from typing import Any, get_args, get_origin

from markupsafe import Markup
from pydantic import BaseModel

from controller.pages.forms import label_for, unwrap

__all__ = ["masks_svg", "model_view"]

_BADGES = {"low": "ok", "medium": "warn", "high": "fail"}
#: Fields holding an enum value shown as words.
_WORDS = frozenset({"kind", "characteristic", "source", "lawful_basis"})


def _label(name: str, model: type[BaseModel]) -> str:
    return label_for(name, model.model_fields.get(name))


def _scalar(name: str, value: Any) -> str:
    if value is None or value == "":
        return '<span class="muted">not stated</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, datetime):
        return escape(value.strftime("%d %b %Y %H:%M UTC"))
    if isinstance(value, date):
        return escape(value.strftime("%d %b %Y"))
    text = str(value)
    if name in ("overall", "residual", "residual_risk", "residual_risk_level") or (
        name.endswith("risk") and text in _BADGES
    ):
        return f'<span class="badge {_BADGES.get(text, "unknown")}">{escape(text)}</span>'
    if name in _WORDS:
        text = text.replace("_", " ")
    return f'<span class="pia-section">{escape(text)}</span>'


def _fields(model: type[BaseModel]) -> list[str]:
    return [*model.model_fields, *model.model_computed_fields]


def _item_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    info = model.model_fields.get(name)
    if info is None:
        return None
    annotation = unwrap(info.annotation)[0]
    if get_origin(annotation) is list and get_args(annotation):
        inner = unwrap(get_args(annotation)[0])[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _flat(model: type[BaseModel]) -> bool:
    return all(_item_model(model, name) is None for name in model.model_fields)


def _write(out: list[str], model: type[BaseModel], value: BaseModel, level: int) -> None:
    scalars: list[tuple[str, Any]] = []
    nested: list[tuple[str, Any]] = []
    for name in _fields(model):
        item = getattr(value, name)
        if name == "masks" or _item_model(model, name) is not None:
            nested.append((name, item))
        else:
            scalars.append((name, item))
    if scalars:
        out.append('<dl class="facts">')
        for name, item in scalars:
            out.append(f"<dt>{escape(_label(name, model))}</dt><dd>{_scalar(name, item)}</dd>")
        out.append("</dl>")
    heading = f"h{min(level, 4)}"
    for name, item in nested:
        out.append(f"<{heading}>{escape(_label(name, model))}</{heading}>")
        if name == "masks":
            out.append(str(masks_svg(item)))
            labels = ", ".join(escape(m.label) for m in item) or "none"
            out.append(f'<p class="small">Masks: {labels}.</p>')
            continue
        sub = _item_model(model, name)
        assert sub is not None
        if isinstance(item, BaseModel):
            _write(out, sub, item, level + 1)
        elif not item:
            out.append('<p class="muted">None recorded.</p>')
        elif _flat(sub):
            _table(out, sub, item)
        else:
            for index, entry in enumerate(item, start=1):
                out.append(f'<div class="panel"><p><strong>{index}.</strong></p>')
                _write(out, sub, entry, level + 1)
                out.append("</div>")


def _table(out: list[str], model: type[BaseModel], items: list[BaseModel]) -> None:
    names = _fields(model)
    out.append('<div class="table-wrap"><table><thead><tr>')
    out.extend(f'<th scope="col">{escape(_label(n, model))}</th>' for n in names)
    out.append("</tr></thead><tbody>")
    for entry in items:
        out.append("<tr>")
        out.extend(f"<td>{_scalar(n, getattr(entry, n))}</td>" for n in names)
        out.append("</tr>")
    out.append("</tbody></table></div>")


def model_view(value: BaseModel, *, level: int = 3) -> Markup:
    out: list[str] = []
    _write(out, type(value), value, level)
    return Markup("".join(out))


def masks_svg(masks: Any, *, width: int = 640, height: int = 360) -> Markup:
    """The mask polygons over a neutral 16:9 grid (never the camera image)."""
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Privacy masks on the frame" xmlns="http://www.w3.org/2000/svg" '
        f'style="max-width:{width}px">',
        f'<rect width="{width}" height="{height}" fill="#dfe4ea"/>',
    ]
    for x in range(0, width + 1, 40):
        parts.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{height}" stroke="#c9d0d8"/>')
    for y in range(0, height + 1, 40):
        parts.append(f'<line x1="0" y1="{y}" x2="{width}" y2="{y}" stroke="#c9d0d8"/>')
    for mask in masks or []:
        polygon = mask.polygon if hasattr(mask, "polygon") else mask.get("polygon", [])
        label = mask.label if hasattr(mask, "label") else mask.get("label", "")
        points = " ".join(f"{p[0] * width:.1f},{p[1] * height:.1f}" for p in polygon)
        parts.append(
            f'<polygon points="{points}" fill="rgba(0,0,0,.65)" stroke="#ffbf47" '
            f'stroke-width="2"><title>{escape(str(label))}</title></polygon>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
