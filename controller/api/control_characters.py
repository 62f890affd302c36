"""Control characters in what a browser or a script sends are refused at the edge.

PostgreSQL's text types cannot hold NUL at all while SQLite can, so the same input would
be stored on one and fail on the other; the other C0 controls (escape sequences, bells,
backspaces) have no place in a name, a note or a filter, and turn logs and terminal output
into traps. So every route first runs `refuse_control_characters` (an app-wide
dependency, so no route can forget), which refuses with 422 and a sentence naming the
field, rendered like any other invalid value: JSON under /api, a page for the pages.

- the URL path and query parameters (names and values): no C0 control character
  (U+0000 to U+001F) and no DEL, not even tab or newline;
- form fields and JSON strings (names and values): the same, except tab, carriage
  return and line feed, which multi-line fields (notes, reasons, PIA text) carry.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

from controller.api.auth import current_user

__all__ = ["IN_LINE", "IN_TEXT", "refuse_control_characters"]

#: Refused in a path or query parameter.
IN_LINE = re.compile(r"[\x00-\x1f\x7f]")
#: Refused in a form field or a JSON string (tab, CR and LF are allowed).
IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NAMES = {0: "NUL", 9: "tab", 10: "line feed", 13: "carriage return", 27: "ESC", 127: "DEL"}
_MAX_PROBLEMS = 5

Problem = tuple[tuple[str | int, ...], str]


def _describe(char: str) -> str:
    code = ord(char)
    return _NAMES.get(code, f"U+{code:04X}")


def _check(where: tuple[str | int, ...], text: str, pattern: re.Pattern[str]) -> Iterator[Problem]:
    found = pattern.search(text)
    if found is not None:
        yield where, f"contains a control character ({_describe(found.group())}); remove it"


def _json_problems(value: Any, where: tuple[str | int, ...]) -> Iterator[Problem]:
    if isinstance(value, str):
        yield from _check(where, value, IN_TEXT)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _check((*where, key), key, IN_LINE)
            yield from _json_problems(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_problems(item, (*where, index))


async def _body_problems(request: Request) -> list[Problem]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    problems: list[Problem] = []
    if media_type in _FORM_TYPES:
        try:
            form = await request.form()
        except Exception as exc:  # malformed multipart or encoding: nothing reaches a route
            raise HTTPException(400, "The form in the request cannot be read.") from exc
        for key, value in form.multi_items():
            problems.extend(_check(("body", key), key, IN_LINE))
            text = value if isinstance(value, str) else value.filename or ""
            problems.extend(_check(("body", key), text, IN_TEXT))
    elif media_type == "application/json" or media_type.endswith("+json"):
        try:
            data = json.loads(await request.body())
        except ValueError:
            return []  # the route itself reports JSON it cannot read
        problems.extend(_json_problems(data, ("body",)))
    return problems


async def refuse_control_characters(request: Request) -> None:
    """App-wide dependency: raise `RequestValidationError` (422) naming each field that
    holds a control character it may not."""
    # scope["path"] is percent-decoded; request.url would drop a decoded tab or newline.
    problems: list[Problem] = list(_check(("path", "address"), request.scope["path"], IN_LINE))
    for key, value in request.query_params.multi_items():
        problems.extend(_check(("query", key), key + value, IN_LINE))
    if request.method in _UNSAFE:
        problems.extend(await _body_problems(request))
    if problems:
        # Say who is refused, so a page's refusal keeps the user's top bar; the caller is
        # found from hashes of the cookie or token alone, which no sent text reaches.
        with contextlib.suppress(HTTPException):
            await current_user(request)
        raise RequestValidationError(
            [
                {"type": "control_character", "loc": where, "msg": message, "input": None}
                for where, message in problems[:_MAX_PROBLEMS]
            ]
        )
