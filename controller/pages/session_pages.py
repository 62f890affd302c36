"""Signing in and out, the start page of each role, and the small static files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from controller.api.auth import Role, User, current_user, login, logout
from controller.pages.render import STATIC_DIR, PageRoute, page

__all__ = ["router", "safe_next"]

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


def safe_next(value: str | None) -> str | None:
    """A local path to return to after signing in; anything else (another site) is dropped."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
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
    return page(
        request,
        "login.html",
        None,
        title="Sign in",
        next_url=safe_next(next) or "",
        username="",
        error=None,
    )


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    target = safe_next(next)
    if not username.strip() or not password:
        return _login_error(request, username, target, "Enter your username and password.", 400)
    response = RedirectResponse("/", status_code=303)
    try:
        result = await login(request, response, username=username.strip(), password=password)
    except HTTPException as exc:  # LoginFailed (401) or TooManyAttempts (429)
        error = exc.detail if isinstance(exc.detail, str) else "Sign-in failed."
        reply = _login_error(request, username, target, error, exc.status_code)
        for name, value in (exc.headers or {}).items():
            if name.lower() == "retry-after":
                reply.headers[name] = value
        return reply
    response.headers["location"] = target or START_PAGE[Role(result.user.role)]
    return response


def _login_error(
    request: Request, username: str, target: str | None, error: str, status_code: int
) -> HTMLResponse:
    return page(
        request,
        "login.html",
        None,
        title="Sign in",
        status_code=status_code,
        next_url=target or "",
        username=username[:200],
        error=error,
    )


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
