"""Signing in and out, the start page of each role, and the small static files.

The sign-in form carries a pre-session token (`controller.api.login_guard`), and the
page returned to after signing in (`next`) is only ever a path on this site (`safe_next`).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from controller.api.auth import Role, User, current_user, login, logout
from controller.api.login_guard import FORM_FIELD, check_form_token, check_same_site, form_token
from controller.pages.render import STATIC_DIR, PageRoute, page

__all__ = ["NEXT_MAX", "router", "safe_next"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: Where each role lands after signing in.
START_PAGE: dict[Role, str] = {
    Role.MANAGER: "/fleet",
    Role.OPERATOR: "/fleet",
    Role.DATA_CONTROLLER: "/fleet",
    Role.CONTRACTOR: "/callouts",
    Role.AUDITOR: "/kpis",
}
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}

#: The longest return path kept (a longer one is dropped: the role's start page instead).
NEXT_MAX = 512
#: A return path as sent: "/" then RFC 3986 path, query and fragment characters only: no
#: space, tab, newline, backslash, control or non-ASCII character anywhere.
_NEXT = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%#]*")
_DECODE_ROUNDS = 3


def _decoded(value: str) -> str | None:
    """`value` percent-decoded until it stops changing; None if it never settles."""
    for _ in range(_DECODE_ROUNDS):
        once = unquote(value)
        if once == value:
            return value
        value = once
    return None


def _plain_path(path: str) -> bool:
    return (
        path.startswith("/")
        and not path.startswith(("//", "/\\"))
        and path.isascii()
        and all(" " < c < "\x7f" and c != "\\" for c in path)
    )


def safe_next(value: str | None) -> str | None:
    r"""`value` if it is a path on this site to return to after signing in, else None.

    An allow-list, because browsers are generous readers of URLs: they drop tab and
    newline anywhere and read "\" as "/", so `/<tab>/evil.example` or `/\evil.example`
    leaves the site. Kept only: at most `NEXT_MAX` characters, "/" then RFC 3986 path,
    query and fragment characters; percent-decoded (repeatedly), no control character
    anywhere and a path part that still starts with a single "/" and holds only printable
    ASCII without space or backslash; and neither form parses with a scheme or a host.
    """
    if not value or len(value) > NEXT_MAX or not _NEXT.fullmatch(value):
        return None
    decoded = _decoded(value)
    if decoded is None or any(c < " " or c == "\x7f" for c in decoded):
        return None
    if not _plain_path(value.split("?", 1)[0].split("#", 1)[0]):
        return None
    if not _plain_path(decoded.split("?", 1)[0].split("#", 1)[0]):
        return None
    for form in (value, decoded):
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return None
    return value


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    try:
        user = await current_user(request)
    except HTTPException:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(START_PAGE[user.role], status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return await _login_page(request, username="", target=safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
    form_token_sent: Annotated[str, Form(alias=FORM_FIELD, max_length=200)] = "",
) -> Response:
    target = safe_next(next)
    try:
        check_same_site(request)
        await check_form_token(request, form_token_sent)
    except HTTPException as exc:  # CrossSiteLogin or LoginFormRefused (403)
        log.info("sign-in form refused status=%s", exc.status_code)
        return await _login_page(
            request, username=username, target=target, error=exc.detail, status_code=403
        )
    if not username.strip() or not password:
        return await _login_page(
            request,
            username=username,
            target=target,
            error="Enter your username and password.",
            status_code=400,
        )
    response = RedirectResponse("/", status_code=303)
    try:
        result = await login(request, response, username=username.strip(), password=password)
    except HTTPException as exc:  # LoginFailed (401) or TooManyAttempts (429)
        error = exc.detail if isinstance(exc.detail, str) else "Sign-in failed."
        reply = await _login_page(
            request, username=username, target=target, error=error, status_code=exc.status_code
        )
        for name, value in (exc.headers or {}).items():
            if name.lower() == "retry-after":
                reply.headers[name] = value
        return reply
    response.headers["location"] = target or START_PAGE[Role(result.user.role)]
    return response


async def _login_page(
    request: Request,
    *,
    username: str,
    target: str | None,
    error: str | None,
    status_code: int = 200,
) -> HTMLResponse:
    """The sign-in form (with a sentence when `error`), its token and the token's cookie."""
    form = await form_token(request)
    response = page(
        request,
        "login.html",
        None,
        title="Sign in",
        status_code=status_code,
        next_url=target or "",
        username=username[:200],
        error=error,
        form_field=FORM_FIELD,
        form_token=form.token,
    )
    form.set_cookie(request, response)
    return response


@router.post("/logout")
async def logout_submit(
    request: Request, _user: Annotated[User, Depends(current_user)]
) -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    await logout(request, response)
    return response


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    kind = _STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, "There is no such file.")
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "max-age=300"})
