"""The API reference at /api/docs: the app's OpenAPI document drawn as a page of this site.

Server-side, with the pages' templates and security headers (no script, nothing from
another origin), for signed-in users only. Each operation shows who may call it (read
from its role guard), its parameters, body and answers; each schema its fields. The
document itself is at /api/openapi.json, for signed-in users and API tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import fastapi.routing
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute

from controller.api.auth import PUBLIC_ENDPOINTS, Role, User, current_user, guard_roles
from controller.pages.render import PageRoute, page

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

_METHODS = ("get", "post", "put", "patch", "delete")
_CODE = re.compile(r"`([^`]+)`")
_REF = "#/components/schemas/"
#: A type as text pieces; a piece with a name links to that schema.
TypeText = list[tuple[str, str | None]]
#: A description as text pieces, each plain or code (drawn by the template).
Prose = tuple[tuple[str, bool], ...]


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    type: TypeText
    required: bool
    description: str
    where: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    anchor: str
    method: str
    path: str
    summary: str
    description: Prose
    who: str
    parameters: list[Item]
    body: TypeText | None
    body_type: str
    answers: list[Item]


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    description: str
    fields: list[Item] = field(default_factory=list)
    values: list[str] = field(default_factory=list)


def prose(text: str) -> Prose:
    """A description as pieces of (text, is code): `backquoted` words are code."""
    pieces = _CODE.split(text)  # even indexes: prose; odd: what was between backquotes
    return tuple((piece, index % 2 == 1) for index, piece in enumerate(pieces) if piece)


def type_text(schema: dict[str, Any]) -> TypeText:
    """`{"anyOf": [{"$ref": ".../Unit"}, {"type": "null"}]}` -> Unit or null."""
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix(_REF)
        return [(name, name)]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            parts: TypeText = []
            for index, option in enumerate(schema[key]):
                if index:
                    parts.append((" or " if key != "allOf" else " and ", None))
                parts.extend(type_text(option))
            return parts
    if "enum" in schema:
        return [("one of " + ", ".join(str(v) for v in schema["enum"]), None)]
    if "const" in schema:
        return [(repr(schema["const"]), None)]
    kind = schema.get("type", "any")
    if kind == "array":
        return [("list of ", None), *type_text(schema.get("items", {}))]
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return [("map of ", None), *type_text(schema["additionalProperties"])]
    fmt = schema.get("format")
    return [(f"{kind} ({fmt})" if fmt else str(kind), None)]


def _routes(app: FastAPI) -> Iterator[tuple[str, set[str], Dependant]]:
    """(path, methods, dependant) of every API route, included routers' too (FastAPI
    0.137 and later keep those behind `iter_route_contexts`; earlier ones flatten them)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: list[Any] = list(contexts(app.routes) if contexts is not None else app.routes)
    for route in routes:
        original = getattr(route, "original_route", route)
        if isinstance(original, APIRoute):
            yield route.path, set(route.methods or ()), route.dependant


def _who(app: FastAPI, method: str, path: str) -> str:
    if f"{method} {path}" in PUBLIC_ENDPOINTS:
        return "anyone, without signing in"
    for route_path, methods, dependant in _routes(app):
        if route_path == path and method in methods:
            allowed = guard_roles(dependant)
            if allowed is not None and len(allowed) < len(Role):
                return ", ".join(r.label for r in allowed)
    return "any signed-in user"


def _operation(app: FastAPI, path: str, method: str, spec: dict[str, Any]) -> Operation:
    parameters = [
        Item(
            p["name"],
            type_text(p.get("schema", {})),
            bool(p.get("required")),
            p.get("description", "") or p.get("schema", {}).get("description", ""),
            p.get("in", ""),
        )
        for p in spec.get("parameters", [])
    ]
    body, body_type = None, ""
    for content_type, content in spec.get("requestBody", {}).get("content", {}).items():
        body, body_type = type_text(content.get("schema", {})), content_type
    answers = []
    for status, answer in spec.get("responses", {}).items():
        contents: list[dict[str, Any]] = list(answer.get("content", {}).values())
        schema = contents[0].get("schema") if contents else None
        answers.append(
            Item(status, type_text(schema) if schema else [], False, answer.get("description", ""))
        )
    return Operation(
        anchor=str(spec.get("operationId", f"{method}-{path}")),
        method=method.upper(),
        path=path,
        summary=spec.get("summary", ""),
        description=prose(spec.get("description", "")),
        who=_who(app, method.upper(), path),
        parameters=parameters,
        body=body,
        body_type=body_type,
        answers=answers,
    )


def _schema(name: str, spec: dict[str, Any]) -> Schema:
    required = set(spec.get("required", []))
    fields = [
        Item(key, type_text(value), key in required, value.get("description", ""))
        for key, value in spec.get("properties", {}).items()
    ]
    values = [str(v) for v in spec.get("enum", [])]
    return Schema(name, spec.get("description", ""), fields, values)


def reference(app: FastAPI) -> tuple[dict[str, Any], list[Operation], list[Schema]]:
    """The OpenAPI document's info, its operations (by path) and its schemas (by name)."""
    document = app.openapi()
    operations = [
        _operation(app, path, method, item[method])
        for path, item in sorted(document.get("paths", {}).items())
        for method in _METHODS
        if method in item
    ]
    schemas = document.get("components", {}).get("schemas", {})
    return (
        document.get("info", {}),
        operations,
        [_schema(name, spec) for name, spec in sorted(schemas.items())],
    )


@router.get("/api/docs", response_class=HTMLResponse)
async def api_docs(request: Request, user: Annotated[User, Depends(current_user)]) -> HTMLResponse:
    info, operations, schemas = reference(request.app)
    return page(
        request,
        "api_docs.html",
        user,
        title="API reference",
        info=info,
        operations=operations,
        schemas=schemas,
    )
