"""Signing in and out, the start page of each role, and the small static files.

The sign-in form carries a pre-session token (`controller.api.login_guard`), and the
page returned to after signing in (`next`) is only ever a path on this site (`safe_next`).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from controller.api.auth import Role, User, accounts_of, current_user, login, logout
from controller.api.login_guard import FORM_FIELD, check_form_token, check_same_site, form_token
from controller.pages import resume
from controller.pages.render import STATIC_DIR, PageRoute, page
from controller.pages.return_paths import safe_next

__all__ = ["router"]

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


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    try:
        user = await current_user(request)
    except HTTPException:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(START_PAGE[user.role], status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request,
    next: Annotated[str | None, Query(max_length=2000)] = None,
    ended: Annotated[str | None, Query(max_length=10)] = None,
) -> HTMLResponse:
    return await _login_page(
        request, username="", target=safe_next(next), error=None, ended=ended == "1"
    )


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
    ended: bool = False,
) -> HTMLResponse:
    """The sign-in form (with a sentence when `error`; saying so when the user's session
    ended, and what they were doing when it did), its token and the token's cookie."""
    form = await form_token(request)
    kept = getattr(request.state, "pending", None)
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
        ended=ended,
        kept=kept if isinstance(kept, resume.PendingAction) else None,
        idle=_span(accounts_of(request).settings.idle_minutes),
        lifetime=_span(accounts_of(request).settings.session_hours * 60),
    )
    form.set_cookie(request, response)
    return response


def _span(minutes: float) -> str:
    """A session limit in words: "2 hours", "90 minutes", "1 hour"."""
    whole = round(minutes)
    if whole % 60 == 0:
        hours = whole // 60
        return f"{hours} hour{'' if hours == 1 else 's'}"
    return f"{whole} minute{'' if whole == 1 else 's'}"


@router.post("/logout")
async def logout_submit(
    request: Request, _user: Annotated[User, Depends(current_user)]
) -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    await logout(request, response)
    return response


@router.post("/resume/discard")
async def discard_pending(
    request: Request,
    _user: Annotated[User, Depends(current_user)],
    return_to: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    """Drop the form kept when the session ended (`controller.pages.resume`)."""
    response = RedirectResponse(safe_next(return_to) or "/", status_code=303)
    resume.forget(response)
    return response


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    kind = _STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, "There is no such file.")
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "max-age=300"})
