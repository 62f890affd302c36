"""How a page is drawn: a template of `controller.pages.templating` with the top bar's
navigation, the security headers, and the route class that turns a refusal or an error
into an HTML page with a sentence.

    router = APIRouter(route_class=PageRoute)

    @router.get("/fleet")
    async def fleet(request: Request, user: PageUser) -> HTMLResponse:
        return page(request, "fleet.html", user, title="Fleet", units=...)

`PageRoute` catches what a page's dependencies or body raise: no session -> 303 to the login
page (401 for a background refresh), an `HTTPException` -> its status with the detail as a
sentence (403 is the refusal page), a `ControllerError` -> its own `status` with its message
as a sentence (`controller.errors.sentence`), as the JSON API answers it.

Templates ask `may("view_footage")` whether the signed-in user has a permission
(`controller.accounts.permissions`); the top bar shows the sections they may open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from controller.accounts.permissions import Permission, may
from controller.api.auth import User, csrf_token
from controller.errors import ControllerError, LinkError, sentence
from controller.pages.templating import (
    STATIC_DIR,
    TEMPLATES_DIR,
    fmt_bytes,
    fmt_when,
    templates,
)

__all__ = [
    "NAV",
    "REFRESH_HEADER",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "NavItem",
    "PageRoute",
    "fmt_bytes",
    "fmt_when",
    "page",
    "refusal",
    "templates",
]

log = logging.getLogger(__name__)

#: Every page: scripts only from this site (no inline script), no framing, no caching of
#: pages that carry fleet data, no referrer to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: Sent by refresh.js: a background refresh wants a status, not a redirect to the login page.
REFRESH_HEADER = "X-Page-Refresh"


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str
    label: str
    path: str
    permission: Permission


NAV: tuple[NavItem, ...] = (
    NavItem("fleet", "Fleet", "/fleet", Permission.VIEW_FLEET),
    NavItem("callouts", "Callouts", "/callouts", Permission.VIEW_CALLOUTS),
    NavItem("deployments", "Deployments", "/deployments", Permission.VIEW_DEPLOYMENTS),
    NavItem("cases", "Cases", "/cases", Permission.VIEW_CASES),
    NavItem("evidence-logs", "Evidence logs", "/logs/review", Permission.VIEW_EVIDENCE_LOGS),
    NavItem("kpis", "KPIs", "/kpis", Permission.VIEW_KPIS),
    NavItem("audit", "Audit log", "/audit", Permission.VIEW_AUDIT),
    NavItem("users", "Users", "/users", Permission.VIEW_USERS),
)


# -------------------------------------------------------------------------- rendering


def nav_for(user: User | None) -> list[NavItem]:
    if user is None:
        return []
    return [item for item in NAV if may(user.role, item.permission)]


def _may(user: User | None) -> Callable[[str], bool]:
    """The templates' `may(permission)`: whether the page's user has it."""

    def check(permission: str) -> bool:
        return user is not None and may(user.role, permission)

    return check


def page(
    request: Request,
    template: str,
    user: User | None,
    *,
    title: str,
    status_code: int = 200,
    section: str | None = None,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a full page (or a fragment template) with the top bar's context."""
    values: dict[str, Any] = {
        "user": user,
        "title": title,
        "nav": nav_for(user),
        "may": _may(user),
        "section": section,
        "csrf_token": csrf_token(request) if user is not None else "",
        "now": datetime.now(UTC),
        "notice": None,
        **context,
    }
    response = templates.TemplateResponse(
        request, template, values, status_code=status_code, headers=dict(headers or {})
    )
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def refusal(request: Request, status_code: int, message: str) -> HTMLResponse:
    """The page shown for a refused or failed request: a heading and one sentence."""
    user = _caller(request)
    heading = {
        400: "The request cannot be carried out",
        403: "You cannot open this page",
        404: "Not found",
        409: "The request cannot be carried out",
        422: "Some values are not valid",
        429: "Too many attempts",
    }.get(status_code, "Something went wrong")
    return page(
        request,
        "refused.html",
        user,
        title=heading,
        status_code=status_code,
        heading=heading,
        message=message,
    )


def _caller(request: Request) -> User | None:
    caller = getattr(request.state, "caller", None)
    user = getattr(caller, "user", None)
    return user if isinstance(user, User) else None


def _detail(detail: Any) -> str:
    return sentence(detail if isinstance(detail, str) else "")


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = " ".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where or 'a value'}: {error.get('msg', 'not valid')}")
    return "Some values are not valid (" + "; ".join(parts) + ")."


class PageRoute(APIRoute):
    """An APIRoute whose refusals and errors are HTML pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                if exc.status_code == 401:
                    if request.headers.get(REFRESH_HEADER):
                        return HTMLResponse(_detail(exc.detail), status_code=401)
                    target = request.url.path
                    if request.method == "GET" and request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
                response = refusal(request, exc.status_code, _detail(exc.detail))
                for name, value in (exc.headers or {}).items():
                    response.headers[name] = value
                return response
            except RequestValidationError as exc:
                return refusal(request, 422, _validation_sentence(exc))
            except ControllerError as exc:
                if exc.status >= 500 and not isinstance(exc, LinkError):
                    log.error("page=%s failed", request.url.path, exc_info=exc)
                else:
                    log.info("page=%s refused: %s", request.url.path, exc)
                return refusal(request, exc.status, sentence(exc))

        return page_handler
