"""HTML forms drawn from pydantic models (reading them back: `controller.pages.form_data`).

The PIA has many sections and nested lists (risks, figures); drawing its form from the model
itself keeps every field on the page and lets the model's own validation speak:

    html = model_form(DeploymentRequest, values=draft.model_dump(mode="json"), prefix="pia")
    # and back: controller.pages.form_data.form_tree / coerce / field_errors

Field names are dotted paths (`pia.signage.erected_on`, `pia.risks.0.likelihood`); lists of
models repeat a fieldset with an "Add another" button (listrows.js); a field whose name says
it holds privacy masks is drawn as the mask editor (masks.js) over the unit's reference
picture (reference.js), and a `reference_frame` field beside it becomes the editor's hidden
record of which picture that is (its SHA-256).

This module decides what the form holds (`form_nodes`: fieldsets, repeated groups, inputs
with their values, hints and errors); the markup is the `_forms.html` template's.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal, get_args, get_origin

from markupsafe import Markup
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from controller.pages.model_fields import DATES, DATETIMES, is_model, label_for, unwrap
from controller.pages.templating import macro

__all__ = [
    "FieldNode",
    "GroupNode",
    "MasksNode",
    "Node",
    "RepeatNode",
    "form_nodes",
    "model_form",
]

LONG_TEXT = 200
PLACEHOLDER_FRAME = "/static/frame-placeholder.svg"
#: Beside a masks field: the SHA-256 of the reference picture the masks are drawn on.
REFERENCE_FIELD = "reference_frame"
_CHOICE_PATTERN = re.compile(r"^\^\(([\w|]+)\)\$$")

Widget = Literal["checkbox", "select", "lines", "date", "datetime", "number", "text", "textarea"]


@dataclass(frozen=True, slots=True)
class FieldNode:
    """One input: `widget` says which; `value` is the text it shows."""

    ident: str
    name: str
    label: str
    hint: str
    error: str | None
    widget: Widget
    value: str
    required: bool = False
    checked: bool = False
    described_by: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    blank: str | None = None
    step: str = ""
    kind: Literal["field"] = "field"


@dataclass(frozen=True, slots=True)
class GroupNode:
    """A nested model's fieldset (`ident` set), or one entry of a repeated group (`number`)."""

    ident: str | None
    label: str
    hint: str
    error: str | None
    error_ident: str
    children: tuple[Node, ...]
    number: str | None = None
    kind: Literal["group"] = "group"


@dataclass(frozen=True, slots=True)
class RepeatNode:
    """A list of models: its entries, and the blank entry listrows.js copies for a new one
    (`placeholder` stands for the index in the copied names)."""

    ident: str
    label: str
    hint: str
    error: str | None
    error_ident: str
    entries: tuple[GroupNode, ...]
    blank_entry: GroupNode
    placeholder: str
    kind: Literal["repeat"] = "repeat"


@dataclass(frozen=True, slots=True)
class MasksNode:
    """The privacy-mask editor over the reference frame; `polygons` is the hidden field's
    JSON value."""

    ident: str
    name: str
    label: str
    hint: str
    error: str | None
    error_ident: str
    image: str
    polygons: str
    frame_field: str | None = None
    frame_url: str | None = None
    reference_ident: str | None = None
    reference_name: str | None = None
    reference_value: str = ""
    kind: Literal["masks"] = "masks"


Node = FieldNode | GroupNode | RepeatNode | MasksNode


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


@dataclass(frozen=True, slots=True)
class _Builder:
    errors: Mapping[str, str]
    mask_image: str | None
    depth: int = 0
    choices: Mapping[str, list[tuple[str, str]]] = field(default_factory=dict)
    frame_source: tuple[str, str] | None = None

    def model(
        self,
        model: type[BaseModel],
        values: Mapping[str, Any],
        path: str,
        only: Collection[str] | None = None,
    ) -> tuple[Node, ...]:
        nodes: list[Node] = []
        masks = next(
            (n for n, i in model.model_fields.items() if _is_masks(n, unwrap(i.annotation)[0])),
            None,
        )
        for name, info in model.model_fields.items():
            annotation = unwrap(info.annotation)[0]
            if info.exclude or (
                get_origin(annotation) is Literal and len(get_args(annotation)) == 1
            ):
                continue  # a fixed tag, not a question
            if only is not None and name not in only:
                continue  # asked on another step of the form
            if name == REFERENCE_FIELD and masks is not None:
                continue  # kept by the mask editor
            node = self.field(name, info, values.get(name, _default(info)), f"{path}.{name}")
            if name == masks and REFERENCE_FIELD in model.model_fields:
                assert isinstance(node, MasksNode)
                reference = f"{path}.{REFERENCE_FIELD}"
                value = values.get(REFERENCE_FIELD)
                node = replace(
                    node,
                    reference_ident=_ident(reference),
                    reference_name=reference,
                    reference_value="" if value is None else str(value),
                )
            nodes.append(node)
        return tuple(nodes)

    def field(self, name: str, info: FieldInfo, value: Any, path: str) -> Node:
        annotation, optional = unwrap(info.annotation)
        label = label_for(name, info)
        hint = info.description or ""
        if _is_masks(name, annotation):
            return self.masks(path, label, hint, value)
        if is_model(annotation):
            return GroupNode(
                ident=_ident(path),
                label=label,
                hint=hint,
                error=self.errors.get(path),
                error_ident=_ident(path) + "-error",
                children=self.model(annotation, value if isinstance(value, Mapping) else {}, path),
            )
        if get_origin(annotation) is list and is_model(unwrap(get_args(annotation)[0])[0]):
            return self.repeat(path, label, hint, unwrap(get_args(annotation)[0])[0], value)
        return self.scalar(
            path, label, hint, annotation, optional or not info.is_required(), info, value
        )

    def repeat(
        self, path: str, label: str, hint: str, item: type[BaseModel], value: Any
    ) -> RepeatNode:
        items = list(value) if isinstance(value, list) and value else [{}]
        placeholder = f"__i{self.depth}__"
        blank = _Builder({}, self.mask_image, self.depth + 1, self.choices, self.frame_source)
        return RepeatNode(
            ident=_ident(path),
            label=label,
            hint=hint,
            error=self.errors.get(path),
            error_ident=_ident(path) + "-error",
            entries=tuple(
                self.entry(path, label, item, entry if isinstance(entry, Mapping) else {}, str(i))
                for i, entry in enumerate(items)
            ),
            blank_entry=blank.entry(path, label, item, {}, placeholder),
            placeholder=placeholder,
        )

    def entry(
        self, path: str, label: str, item: type[BaseModel], values: Mapping[str, Any], index: str
    ) -> GroupNode:
        return GroupNode(
            ident=None,
            label=label,
            hint="",
            error=None,
            error_ident="",
            children=self.model(item, values, f"{path}.{index}"),
            number=str(int(index) + 1) if index.isdigit() else "new",
        )

    def scalar(
        self,
        path: str,
        label: str,
        hint: str,
        annotation: Any,
        optional: bool,
        info: FieldInfo,
        value: Any,
    ) -> FieldNode:
        ident = _ident(path)
        error = self.errors.get(path)
        common: dict[str, Any] = {
            "ident": ident,
            "name": path,
            "label": label,
            "hint": hint,
            "error": error,
        }
        if annotation is bool:
            return FieldNode(
                **common, widget="checkbox", value="", checked=value in (True, "true", "on")
            )
        described = ((f"{ident}-hint",) if hint else ()) + (
            (f"{ident}-error",) if error is not None else ()
        )
        common.update(required=not optional, described_by=described)
        found = _choices(annotation, info)
        options = self.choices.get(path) or (
            None if found is None else [(c, c.replace("_", " ")) for c in found]
        )
        text = "" if value is None else _text(value)
        if options is not None:
            blank = None
            if optional or not text:
                blank = "(not stated)" if optional else "Choose…"
            return FieldNode(
                **common, widget="select", value=text, options=tuple(options), blank=blank
            )
        if get_origin(annotation) is list:
            lines = "\n".join(_text(v) for v in value) if isinstance(value, list) else text
            return FieldNode(**common, widget="lines", value=lines)
        if annotation in DATES:
            return FieldNode(**common, widget="date", value=text[:10])
        if annotation in DATETIMES:
            return FieldNode(**common, widget="datetime", value=text[:16])
        if annotation in (int, float):
            step = "1" if annotation is int else "any"
            return FieldNode(**common, widget="number", value=text, step=step)
        if annotation is str and (_max_length(info) or LONG_TEXT + 1) <= LONG_TEXT:
            return FieldNode(**common, widget="text", value=text)
        if annotation is str:
            return FieldNode(**common, widget="textarea", value=text)
        # anything else is edited as JSON
        shown = text if isinstance(value, str) else json.dumps(value)
        return FieldNode(**common, widget="textarea", value=shown)

    def masks(self, path: str, label: str, hint: str, value: Any) -> MasksNode:
        frame_field = frame_url = None
        if self.frame_source is not None:
            frame_field, frame_url = _ident(self.frame_source[0]), self.frame_source[1]
        return MasksNode(
            ident=_ident(path),
            name=path,
            label=label,
            hint=hint,
            error=self.errors.get(path),
            error_ident=_ident(path) + "-error",
            # Following a unit, the picture is chosen by reference.js (one audited view).
            image=PLACEHOLDER_FRAME if frame_url else self.mask_image or PLACEHOLDER_FRAME,
            polygons=json.dumps(_masks(value)),
            frame_field=frame_field,
            frame_url=frame_url,
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


def form_nodes(
    model: type[BaseModel],
    *,
    values: Mapping[str, Any] | None = None,
    prefix: str,
    errors: Mapping[str, str] | None = None,
    mask_image: str | None = None,
    choices: Mapping[str, list[tuple[str, str]]] | None = None,
    frame_source: tuple[str, str] | None = None,
    only: Collection[str] | None = None,
) -> tuple[Node, ...]:
    """What the form of `model` holds, field by field (see `model_form`)."""
    builder = _Builder(errors or {}, mask_image, 0, choices or {}, frame_source)
    return builder.model(model, values or {}, prefix, only)


_draw = macro("_forms.html", "model_form")


def model_form(
    model: type[BaseModel],
    *,
    values: Mapping[str, Any] | None = None,
    prefix: str,
    errors: Mapping[str, str] | None = None,
    mask_image: str | None = None,
    choices: Mapping[str, list[tuple[str, str]]] | None = None,
    frame_source: tuple[str, str] | None = None,
    only: Collection[str] | None = None,
) -> Markup:
    """The fields of `model` as HTML (no <form> element: the page supplies it); `choices`
    turns a field (by its dotted name) into a select of (value, label) pairs;
    `frame_source` = (dotted name of the unit field, URL with {unit}) makes the mask editor
    follow the chosen unit's reference frame; `only` names the fields of `model` asked for
    (a step of a longer form; default every field)."""
    nodes = form_nodes(
        model,
        values=values,
        prefix=prefix,
        errors=errors,
        mask_image=mask_image,
        choices=choices,
        frame_source=frame_source,
        only=only,
    )
    return _draw(nodes)
