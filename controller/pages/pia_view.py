"""A stored PIA drawn for reading: every section with its label, nested lists as tables or
blocks, computed risk levels as badges, and the privacy masks drawn over a grid.

`pia_sections` decides what is shown and how each value reads; the markup is the
`_pia.html` template's (and `_frames.html`'s for the masks).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, get_args, get_origin

from markupsafe import Markup
from pydantic import BaseModel

from controller.pages.model_fields import label_for, unwrap
from controller.pages.templating import macro

__all__ = [
    "MaskDrawing",
    "Part",
    "Section",
    "Shown",
    "masks_drawing",
    "masks_svg",
    "model_view",
    "pia_sections",
]

_BADGES = {"low": "ok", "medium": "warn", "high": "fail"}
#: Fields holding an enum value shown as words.
_WORDS = frozenset({"kind", "characteristic", "source", "lawful_basis"})


@dataclass(frozen=True, slots=True)
class Shown:
    """One value as read: `missing` (not stated), `plain` words, a `badge` (risk level,
    `badge` its class) or a `text` answer."""

    kind: Literal["missing", "plain", "badge", "text"]
    text: str = ""
    badge: str = ""


@dataclass(frozen=True, slots=True)
class MaskDrawing:
    """Mask polygons over a neutral grid (never the camera image); `polygons` holds the
    SVG points and the mask's label."""

    width: int
    height: int
    columns: tuple[int, ...]
    rows: tuple[int, ...]
    polygons: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Part:
    """A nested section under its heading: the masks, one model, a table of flat entries,
    numbered panels of deeper entries, or nothing recorded."""

    heading: str
    label: str
    kind: Literal["masks", "model", "table", "panels", "empty"]
    drawing: MaskDrawing | None = None
    mask_labels: tuple[str, ...] = ()
    section: Section | None = None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Shown, ...], ...] = ()
    panels: tuple[Section, ...] = ()


@dataclass(frozen=True, slots=True)
class Section:
    """A model's plain facts (label, value) and then its nested parts."""

    facts: tuple[tuple[str, Shown], ...]
    parts: tuple[Part, ...]


def _label(name: str, model: type[BaseModel]) -> str:
    return label_for(name, model.model_fields.get(name))


def _shown(name: str, value: Any) -> Shown:
    if value is None or value == "":
        return Shown("missing")
    if isinstance(value, bool):
        return Shown("plain", "yes" if value else "no")
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, datetime):
        return Shown("plain", value.strftime("%d %b %Y %H:%M UTC"))
    if isinstance(value, date):
        return Shown("plain", value.strftime("%d %b %Y"))
    text = str(value)
    if name in ("overall", "residual", "residual_risk", "residual_risk_level") or (
        name.endswith("risk") and text in _BADGES
    ):
        return Shown("badge", text, _BADGES.get(text, "unknown"))
    if name in _WORDS:
        text = text.replace("_", " ")
    return Shown("text", text)


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


def _section(model: type[BaseModel], value: BaseModel, level: int) -> Section:
    facts: list[tuple[str, Shown]] = []
    parts: list[Part] = []
    heading = f"h{min(level, 4)}"
    for name in _fields(model):
        item = getattr(value, name)
        label = _label(name, model)
        if name == "masks":
            parts.append(
                Part(
                    heading,
                    label,
                    "masks",
                    drawing=masks_drawing(item),
                    mask_labels=tuple(str(m.label) for m in item),
                )
            )
            continue
        sub = _item_model(model, name)
        if sub is None:
            facts.append((label, _shown(name, item)))
        elif isinstance(item, BaseModel):
            parts.append(Part(heading, label, "model", section=_section(sub, item, level + 1)))
        elif not item:
            parts.append(Part(heading, label, "empty"))
        elif _flat(sub):
            names = _fields(sub)
            parts.append(
                Part(
                    heading,
                    label,
                    "table",
                    columns=tuple(_label(n, sub) for n in names),
                    rows=tuple(tuple(_shown(n, getattr(e, n)) for n in names) for e in item),
                )
            )
        else:
            parts.append(
                Part(
                    heading,
                    label,
                    "panels",
                    panels=tuple(_section(sub, entry, level + 1) for entry in item),
                )
            )
    return Section(tuple(facts), tuple(parts))


def pia_sections(value: BaseModel, *, level: int = 3) -> Section:
    """What the reading view of `value` shows; `level` is the first heading's level."""
    return _section(type(value), value, level)


def masks_drawing(masks: Any, *, width: int = 640, height: int = 360) -> MaskDrawing:
    """The mask polygons (models or dicts with `polygon` and `label`, coordinates as
    fractions of the frame) scaled onto a `width` x `height` grid."""
    polygons = []
    for mask in masks or []:
        polygon = mask.polygon if hasattr(mask, "polygon") else mask.get("polygon", [])
        label = mask.label if hasattr(mask, "label") else mask.get("label", "")
        points = " ".join(f"{p[0] * width:.1f},{p[1] * height:.1f}" for p in polygon)
        polygons.append((points, str(label)))
    return MaskDrawing(
        width,
        height,
        tuple(range(0, width + 1, 40)),
        tuple(range(0, height + 1, 40)),
        tuple(polygons),
    )


_draw_section = macro("_pia.html", "pia_view")
_draw_masks = macro("_frames.html", "masks")


def model_view(value: BaseModel, *, level: int = 3) -> Markup:
    """`value` (a PIA or any section of one) as HTML for reading."""
    return _draw_section(pia_sections(value, level=level))


def masks_svg(masks: Any, *, width: int = 640, height: int = 360) -> Markup:
    """The mask polygons over a neutral 16:9 grid (never the camera image), as inline SVG."""
    return _draw_masks(masks_drawing(masks, width=width, height=height))
