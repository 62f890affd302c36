"""A stored PIA drawn for reading: every section with its label, nested lists as tables or
blocks, computed risk levels as badges, and the privacy masks drawn over the unit's
reference picture they were drawn on (`FrameShown`; a neutral grid where the reader may not
see it or the PIA records none).

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

from controller import localtime
from controller.pages.model_fields import label_for, unwrap
from controller.pages.templating import macro, page_zone

__all__ = [
    "FrameShown",
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
#: The field of a PIA recording the SHA-256 of the picture its masks were drawn on.
REFERENCE_FIELD = "reference_frame"
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
class FrameShown:
    """The reference picture a PIA's masks were drawn on (its SHA-256, recorded in the PIA):
    `url` where the reader may see it (None: they may not, or it is not `held`; `held` None:
    not looked up)."""

    sha256: str
    url: str | None
    held: bool | None
    captured_at: datetime | None = None
    requested_by: str | None = None


@dataclass(frozen=True, slots=True)
class MaskDrawing:
    """Mask polygons over `picture` (its address) or, without one, a neutral grid;
    `polygons` holds the SVG points and the mask's label."""

    width: int
    height: int
    columns: tuple[int, ...]
    rows: tuple[int, ...]
    polygons: tuple[tuple[str, str], ...]
    picture: str | None = None


@dataclass(frozen=True, slots=True)
class Part:
    """A nested section under its heading: the masks, one model, a table of flat entries,
    numbered panels of deeper entries, or nothing recorded."""

    heading: str
    label: str
    kind: Literal["masks", "model", "table", "panels", "empty"]
    drawing: MaskDrawing | None = None
    mask_labels: tuple[str, ...] = ()
    frame: FrameShown | None = None
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
        return Shown("plain", localtime.when(value, page_zone()))
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


def _section(
    model: type[BaseModel], value: BaseModel, level: int, frame: FrameShown | None
) -> Section:
    facts: list[tuple[str, Shown]] = []
    parts: list[Part] = []
    heading = f"h{min(level, 4)}"
    for name in _fields(model):
        item = getattr(value, name)
        label = _label(name, model)
        if name == REFERENCE_FIELD and "masks" in model.model_fields:
            continue  # shown with the masks
        if name == "masks":
            recorded = getattr(value, REFERENCE_FIELD, None)
            if frame is None and isinstance(recorded, str) and recorded:
                frame = FrameShown(sha256=recorded, url=None, held=None)
            parts.append(
                Part(
                    heading,
                    label,
                    "masks",
                    drawing=masks_drawing(item, picture=None if frame is None else frame.url),
                    mask_labels=tuple(str(m.label) for m in item),
                    frame=frame,
                )
            )
            continue
        sub = _item_model(model, name)
        if sub is None:
            facts.append((label, _shown(name, item)))
        elif isinstance(item, BaseModel):
            parts.append(
                Part(heading, label, "model", section=_section(sub, item, level + 1, frame))
            )
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
                    panels=tuple(_section(sub, entry, level + 1, frame) for entry in item),
                )
            )
    return Section(tuple(facts), tuple(parts))


def pia_sections(value: BaseModel, *, level: int = 3, frame: FrameShown | None = None) -> Section:
    """What the reading view of `value` shows; `level` is the first heading's level;
    `frame` the picture its masks were drawn on."""
    return _section(type(value), value, level, frame)


def masks_drawing(
    masks: Any, *, width: int = 640, height: int = 360, picture: str | None = None
) -> MaskDrawing:
    """The mask polygons (models or dicts with `polygon` and `label`, coordinates as
    fractions of the frame) scaled onto `picture` (its address) or, without one, a
    `width` x `height` grid."""
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
        picture,
    )


_draw_section = macro("_pia.html", "pia_view")
_draw_masks = macro("_frames.html", "masks")


def model_view(value: BaseModel, *, level: int = 3, frame: FrameShown | None = None) -> Markup:
    """`value` (a PIA or any section of one) as HTML for reading; `frame` is the picture
    its masks were drawn on, as the reader may see it."""
    return _draw_section(pia_sections(value, level=level, frame=frame))


def masks_svg(
    masks: Any, *, width: int = 640, height: int = 360, picture: str | None = None
) -> Markup:
    """The mask polygons over `picture` (its address) or a neutral 16:9 grid, as inline
    SVG."""
    return _draw_masks(masks_drawing(masks, width=width, height=height, picture=picture))
