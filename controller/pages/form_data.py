"""Form data read back into the shape of a pydantic model (the other half of
`controller.pages.forms`): dotted names to nested dicts and lists, textarea lines to lists,
datetime-local values as UTC, and validation errors keyed by field name."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from controller.errors import sentence
from controller.pages.model_fields import DATETIMES, is_model, unwrap

__all__ = ["coerce", "field_errors", "form_tree"]


def _set(tree: dict[str, Any], parts: list[str], value: str) -> None:
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return
    node[parts[-1]] = value


def _shape(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    shaped = {k: _shape(v) for k, v in node.items()}
    if shaped and all(k.isdigit() for k in shaped):
        items = [shaped[k] for k in sorted(shaped, key=int)]
        return [i for i in items if not _blank(i)]
    return {k: v for k, v in shaped.items() if not _blank(v)}


def _blank(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_blank(v) or v == "false" for v in value.values())
    if isinstance(value, list):
        return not value
    return value is None or (isinstance(value, str) and not value.strip())


def form_tree(items: Iterable[tuple[str, Any]], *, prefix: str) -> dict[str, Any]:
    """Nested data from dotted form names under `prefix` (the last value of a name wins;
    blank values and wholly blank list items are left out so the model's defaults apply)."""
    tree: dict[str, Any] = {}
    for key, value in items:
        if not isinstance(value, str) or not key.startswith(prefix + "."):
            continue
        parts = key[len(prefix) + 1 :].split(".")
        _set(tree, parts, value.strip())
    shaped = _shape(tree)
    return _lists_and_json(shaped) if isinstance(shaped, dict) else {}


def _lists_and_json(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _lists_and_json(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_lists_and_json(v) for v in node]
    if isinstance(node, str) and node[:1] in "[{":
        try:
            return json.loads(node)
        except ValueError:
            return node
    return node


def coerce(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Shape form text for the model: textarea lines into lists where it wants a list of
    plain values, and a date-time without a zone (datetime-local) taken as UTC."""
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        annotation, _ = unwrap(info.annotation)
        value = data[name]
        if is_model(annotation) and isinstance(value, dict):
            data[name] = coerce(annotation, value)
        elif annotation in DATETIMES and isinstance(value, str) and len(value) in (16, 19):
            data[name] = value + "+00:00"
        elif get_origin(annotation) is list:
            inner: Any = unwrap(get_args(annotation)[0])[0] if get_args(annotation) else str
            if is_model(inner) and isinstance(value, list):
                data[name] = [coerce(inner, v) if isinstance(v, dict) else v for v in value]
            elif isinstance(value, str):
                data[name] = [line.strip() for line in value.splitlines() if line.strip()]
    return data


def field_errors(exc: ValidationError, *, prefix: str) -> dict[str, str]:
    """`{"prefix.path.to.field": "sentence"}` for each problem (the first per field)."""
    found: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if not str(p).startswith("function-")]
        path = ".".join([prefix, *loc]) if loc else prefix
        message = str(error.get("msg", "not valid"))
        message = message.removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "This is required"
        found.setdefault(path, sentence(message))
    return found
