"""HTML forms drawn from pydantic models (reading them back: `controller.pages.form_data`).

The PIA has many sections and nested lists (risks, figures); drawing its form from the model
itself keeps every field on the page and lets the model's own validation speak:

    html = model_form(DeploymentRequest, values=draft.model_dump(mode="json"), prefix="pia")
    # and back: controller.pages.form_data.form_tree / coerce / field_errors

Field names are dotted paths (`pia.signage.erected_on`, `pia.risks.0.likelihood`); lists of
models repeat a fieldset with an "Add another" button (listrows.js); a field whose name says
it holds privacy masks is drawn as the mask editor (masks.js) over the reference frame.
"""

from __future__ import annotations

import enum
import json
import re
import types
from collections.abc import Mapping
from datetime import date, datetime
from html import escape
from typing import Annotated, Any, Literal, TypeGuard, Union, get_args, get_origin

from markupsafe import Markup
from pydantic import (
    AwareDatetime,
    BaseModel,
    FutureDate,
    FutureDatetime,
    NaiveDatetime,
    PastDate,
    PastDatetime,
)
from pydantic.fields import FieldInfo

__all__ = ["DATETIMES", "LABELS", "is_model", "label_for", "model_form", "unwrap"]

LONG_TEXT = 200
PLACEHOLDER_FRAME = "/static/frame-placeholder.svg"
DATETIMES: tuple[Any, ...] = (datetime, AwareDatetime, NaiveDatetime, FutureDatetime, PastDatetime)
_DATES: tuple[Any, ...] = (date, PastDate, FutureDate)
_CHOICE_PATTERN = re.compile(r"^\^\(([\w|]+)\)\$$")


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside Optional / Annotated, whether None is allowed)."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _choices(annotation: Any, info: FieldInfo | None = None) -> list[str] | None:
    for meta in info.metadata if info is not None else ():
        found = _CHOICE_PATTERN.match(str(getattr(meta, "pattern", "") or ""))
        if found:
            return found.group(1).split("|")
    if get_origin(annotation) is Literal:
        return [str(a) for a in get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    return None


#: Labels where the field name alone reads badly.
LABELS = {
    "unit_id": "Unit",
    "location_id": "Location",
    "pia": "Privacy impact assessment",
    "items": "Crime / ASB references",
    "dpo_advice": "Data protection officer's advice",
    "dpo_name": "DPO's name",
    "prior_consultation": "Prior consultation with the ICO",
    "max_fps": "Maximum frame rate (fps)",
    "bitrate_kbps": "Bitrate (kbit/s)",
    "geofence_radius_m": "Geofence radius (m)",
    "lat": "Latitude",
    "lon": "Longitude",
    "retention_days": "Retention (days)",
    "equality": "Equality impact",
}
_ACRONYMS = {"pia": "PIA", "dpo": "DPO", "ico": "ICO", "asb": "ASB", "id": "ID"}


def label_for(name: str, info: FieldInfo | None = None) -> str:
    """A field's label: its title, a known label, or its name in words."""
    if info is not None and info.title:
        return info.title
    if name in LABELS:
        return LABELS[name]
    words = [_ACRONYMS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _label(name: str, info: FieldInfo) -> str:
    return label_for(name, info)


def _ident(path: str) -> str:
    return "f-" + path.replace(".", "-").replace("_", "-")


def _max_length(info: FieldInfo) -> int | None:
    for meta in info.metadata:
        value = getattr(meta, "max_length", None)
        if isinstance(value, int):
            return value
    return None


def _is_masks(name: str, annotation: Any) -> bool:
    return "mask" in name and get_origin(unwrap(annotation)[0]) is list


class _Writer:
    def __init__(
        self,
        errors: Mapping[str, str],
        mask_image: str | None,
        depth: int = 0,
        choices: Mapping[str, list[tuple[str, str]]] | None = None,
        frame_source: tuple[str, str] | None = None,
    ) -> None:
        self.choices = dict(choices or {})
        self.frame_source = frame_source
        self.errors = errors
        self.depth = depth
        self.mask_image = mask_image
        self.out: list[str] = []

    def w(self, text: str) -> None:
        self.out.append(text)

    def model(self, model: type[BaseModel], values: Mapping[str, Any], path: str) -> None:
        for name, info in model.model_fields.items():
            annotation = unwrap(info.annotation)[0]
            if info.exclude or (
                get_origin(annotation) is Literal and len(get_args(annotation)) == 1
            ):
                continue  # a fixed tag, not a question
            self.field(name, info, values.get(name, _default(info)), f"{path}.{name}")

    def field(self, name: str, info: FieldInfo, value: Any, path: str) -> None:
        annotation, optional = unwrap(info.annotation)
        label = _label(name, info)
        hint = info.description or ""
        if _is_masks(name, annotation):
            self.masks(path, label, hint, value)
            return
        if is_model(annotation):
            self.w(f'<fieldset id="{_ident(path)}"><legend>{escape(label)}</legend>')
            if hint:
                self.w(f'<p class="hint muted small">{escape(hint)}</p>')
            self.error(path)
            self.model(annotation, value if isinstance(value, Mapping) else {}, path)
            self.w("</fieldset>")
            return
        if get_origin(annotation) is list and is_model(unwrap(get_args(annotation)[0])[0]):
            self.repeat(path, label, hint, unwrap(get_args(annotation)[0])[0], value)
            return
        self.scalar(path, label, hint, annotation, optional or not info.is_required(), info, value)

    def repeat(self, path: str, label: str, hint: str, item: type[BaseModel], value: Any) -> None:
        items = list(value) if isinstance(value, list) and value else [{}]
        ident = _ident(path)
        self.w(f'<fieldset id="{ident}-group"><legend>{escape(label)}</legend>')
        if hint:
            self.w(f'<p class="hint muted small">{escape(hint)}</p>')
        self.error(path)
        placeholder = f"__i{self.depth}__"
        self.w(f'<div id="{ident}" data-next="{len(items)}" data-placeholder="{placeholder}">')
        for index, entry in enumerate(items):
            self.item(path, label, item, entry if isinstance(entry, Mapping) else {}, str(index))
        self.w("</div>")
        template = _Writer({}, self.mask_image, self.depth + 1, self.choices, self.frame_source)
        template.item(path, label, item, {}, placeholder)
        self.w(f'<template id="{ident}-template">{"".join(template.out)}</template>')
        self.w(
            f'<button type="button" class="secondary" data-add-row="{ident}">'
            f"Add another: {escape(label.lower())}</button></fieldset>"
        )

    def item(
        self, path: str, label: str, item: type[BaseModel], values: Mapping[str, Any], index: str
    ) -> None:
        number = str(int(index) + 1) if index.isdigit() else "new"
        self.w(f'<fieldset class="item"><legend>{escape(label)}: {number}</legend>')
        self.model(item, values, f"{path}.{index}")
        self.w("</fieldset>")

    def error(self, path: str) -> str:
        message = self.errors.get(path)
        if message is None:
            return ""
        ident = _ident(path) + "-error"
        self.w(f'<p class="error-text" id="{ident}">{escape(message)}</p>')
        return ident

    def scalar(
        self,
        path: str,
        label: str,
        hint: str,
        annotation: Any,
        optional: bool,
        info: FieldInfo,
        value: Any,
    ) -> None:
        ident = _ident(path)
        name = escape(path)
        described = []
        self.w('<div class="field">')
        if annotation is bool:
            checked = " checked" if value in (True, "true", "on") else ""
            self.w(f'<input type="hidden" name="{name}" value="false">')
            self.w(
                f'<label><input type="checkbox" id="{ident}" name="{name}" value="true"{checked}> '
                f"{escape(label)}</label>"
            )
            if hint:
                self.w(f'<span class="hint">{escape(hint)}</span>')
            self.error(path)
            self.w("</div>")
            return
        need = "" if optional else ' <span class="muted small">(required)</span>'
        self.w(f'<label for="{ident}">{escape(label)}{need}</label>')
        if hint:
            self.w(f'<span class="hint" id="{ident}-hint">{escape(hint)}</span>')
            described.append(f"{ident}-hint")
        error = self.error(path)
        if error:
            described.append(error)
        attrs = f'id="{ident}" name="{name}"'
        if described:
            attrs += f' aria-describedby="{" ".join(described)}"'
        if error:
            attrs += ' aria-invalid="true"'
        found = _choices(annotation, info)
        options = self.choices.get(path) or (
            None if found is None else [(c, c.replace("_", " ")) for c in found]
        )
        text = "" if value is None else _text(value)
        if options is not None:
            self.w(f"<select {attrs}>")
            if optional or not text:
                blank = "(not stated)" if optional else "Choose…"
                self.w(f'<option value="">{blank}</option>')
            for choice, shown in options:
                selected = " selected" if choice == text else ""
                self.w(f'<option value="{escape(choice)}"{selected}>{escape(shown)}</option>')
            self.w("</select>")
        elif get_origin(annotation) is list:
            lines = "\n".join(_text(v) for v in value) if isinstance(value, list) else text
            self.w(f'<textarea {attrs} rows="3">{escape(lines)}</textarea>')
            self.w('<span class="hint">One per line.</span>')
        elif annotation in _DATES:
            self.w(f'<input type="date" {attrs} value="{escape(text[:10])}">')
        elif annotation in DATETIMES:
            self.w(f'<input type="datetime-local" {attrs} value="{escape(text[:16])}">')
        elif annotation in (int, float):
            step = "1" if annotation is int else "any"
            self.w(f'<input type="number" step="{step}" {attrs} value="{escape(text)}">')
        elif annotation is str and (_max_length(info) or LONG_TEXT + 1) <= LONG_TEXT:
            self.w(f'<input type="text" {attrs} value="{escape(text)}">')
        elif annotation is str:
            self.w(f'<textarea {attrs} rows="3">{escape(text)}</textarea>')
        else:  # anything else is edited as JSON
            shown = text if isinstance(value, str) else json.dumps(value)
            self.w(f'<textarea {attrs} rows="3">{escape(shown)}</textarea>')
        self.w("</div>")

    def masks(self, path: str, label: str, hint: str, value: Any) -> None:
        ident = _ident(path)
        polygons = json.dumps(_masks(value))
        self.w(f'<fieldset id="{ident}-group"><legend>{escape(label)}</legend>')
        self.w(
            '<p class="hint muted small">Click on the reference frame to add the corners of an '
            "area to black out; choose Finish polygon after the last corner. "
            f"{escape(hint)}</p>"
        )
        self.error(path)
        source = ""
        if self.frame_source is not None:
            field, url = self.frame_source
            source = f' data-frame-source="{escape(_ident(field))}" data-frame-url="{escape(url)}"'
        self.w(
            f'<div class="mask-editor" data-field="{ident}" data-status="{ident}-status"{source}>'
            f'<img src="{escape(self.mask_image or PLACEHOLDER_FRAME)}" '
            'alt="Reference frame of the unit" '
            'width="1280" height="720">'
            '<canvas aria-label="Privacy mask drawing area" data-testid="mask-canvas"></canvas>'
            '<p class="actions" style="margin-top:.5rem">'
            f'<label for="{ident}-label" class="small">What the next mask hides</label>'
            f'<input type="text" id="{ident}-label" data-mask-label maxlength="200" '
            'placeholder="e.g. windows of no. 12">'
            '<button type="button" class="secondary" data-action="finish">Finish polygon</button>'
            '<button type="button" class="secondary" data-action="undo">Undo point</button>'
            '<button type="button" class="secondary" data-action="clear">Clear masks</button>'
            "</p>"
            f'<p id="{ident}-status" class="muted small" role="status"></p></div>'
            f'<input type="hidden" id="{ident}" name="{escape(path)}" value="{escape(polygons)}">'
            "</fieldset>"
        )


def _default(info: FieldInfo) -> Any:
    if info.is_required():
        return None
    try:
        return info.get_default(call_default_factory=True, validated_data={})
    except TypeError:  # a factory that needs the other fields
        return None


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _masks(value: Any) -> list[dict[str, Any]]:
    """Masks as [{"label": ..., "polygon": [[x, y], ...]}] for the editor."""
    masks = []
    for mask in value if isinstance(value, list) else []:
        if isinstance(mask, BaseModel):
            mask = mask.model_dump(mode="json")
        if isinstance(mask, Mapping):
            points = mask.get("polygon") or next(
                (v for v in mask.values() if isinstance(v, list)), []
            )
            label = str(mask.get("label", ""))
        else:
            points, label = mask, ""
        masks.append({"label": label, "polygon": [[float(p[0]), float(p[1])] for p in points]})
    return masks


def model_form(
    model: type[BaseModel],
    *,
    values: Mapping[str, Any] | None = None,
    prefix: str,
    errors: Mapping[str, str] | None = None,
    mask_image: str | None = None,
    choices: Mapping[str, list[tuple[str, str]]] | None = None,
    frame_source: tuple[str, str] | None = None,
) -> Markup:
    """The fields of `model` as HTML (no <form> element: the page supplies it); `choices`
    turns a field (by its dotted name) into a select of (value, label) pairs;
    `frame_source` = (dotted name of the unit field, URL with {unit}) makes the mask editor
    follow the chosen unit's reference frame."""
    writer = _Writer(errors or {}, mask_image, choices=choices, frame_source=frame_source)
    writer.model(model, values or {}, prefix)
    return Markup("".join(writer.out))
