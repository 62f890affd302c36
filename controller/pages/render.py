"""How a page is drawn: a template of `controller.pages.templating` with the top bar's
navigation, the security headers, and the route class that turns a refusal or an error
into an HTML page with a sentence.

    router = APIRouter(route_class=PageRoute)

    @router.get("/fleet")
    async def fleet(request: Request, user: PageUser) -> HTMLResponse:
        return page(request, "fleet.html", user, title="Fleet", units=...)

`PageRoute` catches what a page's dependencies or body raise: no session -> 303 to the login
page (401 for a background refresh or a script asking for JSON), an `HTTPException` -> its
status with the detail as a sentence (403 is the refusal page), a `ControllerError` -> its
own `status` with its message as a sentence (`controller.errors.sentence`), as the JSON API
answers it. A refusal links back to the item it was about (`return_paths.item_page`).

A form sent after its session ended, or from a page opened before the user last signed
in, is kept and offered back on its page after signing in (`controller.pages.resume`).

Templates ask `may("view_footage")` whether the signed-in user has a permission
(`controller.accounts.permissions`), and `why_not("run_selftest")` for the sentence shown
beside a button they may not use; the top bar shows the sections they may open.
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
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute

from controller.accounts.permissions import Permission, may, who_may
from controller.api.auth import CsrfFailed, User, accounts_of, csrf_token
from controller.errors import ControllerError, LinkError, sentence
from controller.pages import resume
from controller.pages.model_fields import label_for
from controller.pages.return_paths import Link, item_page, section_page
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
    "wants_json",
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


def _why_not(user: User | None) -> Callable[[str], str]:
    """The templates' `why_not(permission)`: "" when the page's user has it, else the
    sentence shown beside the button they may not use."""

    def reason(permission: str) -> str:
        if user is None or may(user.role, permission):
            return ""
        role = user.role.label
        article = "an" if role[0] in "aeiou" else "a"
        return f"Only {who_may(permission)} may do this; you are signed in as {article} {role}."

    return reason


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
        "why_not": _why_not(user),
        "pending": resume.shown_on(request, user),
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
    """The page shown for a refused or failed request: a heading, one sentence, and a link
    back to the item it was about (or its list, or the start page)."""
    user = _caller(request)
    asked = request.method in ("GET", "HEAD")
    heading = {
        400: "The request cannot be carried out",
        403: "You cannot open this page" if asked else "You cannot do this",
        404: "Not found",
        405: "This address is not a page",
        409: "The request cannot be carried out",
        422: "Some values are not valid",
        429: "Too many attempts",
        503: "Not available just now",
    }.get(status_code, "Something went wrong")
    return page(
        request,
        "refused.html",
        user,
        title=heading,
        status_code=status_code,
        heading=heading,
        message=message,
        back=_back_link(request, user, status_code),
    )


def _back_link(request: Request, user: User | None, status_code: int) -> Link | None:
    """Where a refusal sends the user back to: the item the request was about, unless the
    item itself cannot be seen (then its list); only a page the user may open."""
    path = request.url.path
    unseen = status_code in (403, 404)
    for link in (item_page(path), section_page(path)):
        if link is None or user is None or (link.href == path and unseen):
            continue
        if may(user.role, link.permission):
            return link
    return None


def wants_json(request: Request) -> bool:
    """A script's request (it asks for JSON and not for a page)."""
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _caller(request: Request) -> User | None:
    caller = getattr(request.state, "caller", None)
    user = getattr(caller, "user", None)
    return user if isinstance(user, User) else None


def _detail(detail: Any) -> str:
    return sentence(detail if isinstance(detail, str) else "")


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        names = [str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body")]
        where = label_for(names[-1]) if names else "A value"
        message = str(error.get("msg", "not valid"))
        parts.append(f"{where}: {message[:1].lower()}{message[1:]}")
    return "Some values are not valid (" + "; ".join(parts) + ")."


async def _signed_out(request: Request, exc: HTTPException) -> Response:
    """No live session: to the sign-in page (saying the session ended, when it did), then
    back to the page; a form sent meanwhile is kept (`controller.pages.resume`)."""
    if request.headers.get(REFRESH_HEADER):
        return HTMLResponse(_detail(exc.detail), status_code=401)
    if wants_json(request):
        return JSONResponse({"detail": _detail(exc.detail)}, status_code=401)
    session_id = request.cookies.get(accounts_of(request).settings.cookie_name)
    owner = None
    if session_id and session_id.isascii():
        owner = await accounts_of(request).logins.session_owner(session_id)
    cookie = None
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    elif owner is not None and resume.keeps(request):
        target, cookie = await resume.keep(request, owner)
    else:
        target = await resume.return_page(request)
    ended = "&ended=1" if owner is not None else ""
    response = RedirectResponse(f"/login?next={quote(target)}{ended}", status_code=303)
    if cookie is not None:
        resume.remember(request, response, cookie)
    return response


async def _stale_form(request: Request) -> Response:
    """A form of a page opened before the user last signed in (its CSRF token is another
    session's): offered back on its page with the current token, if it came from here."""
    session_id = request.cookies.get(accounts_of(request).settings.cookie_name) or ""
    user = await accounts_of(request).logins.user_for_session(session_id)
    if user is None or not resume.keeps(request) or wants_json(request):
        return refusal(
            request,
            403,
            "This form was opened before you last signed in, so it was not sent. Reload the "
            "page and try again.",
        )
    target, cookie = await resume.keep(request, user.username)
    response = RedirectResponse(target, status_code=303)
    resume.remember(request, response, cookie)
    return response


class PageRoute(APIRoute):
    """An APIRoute whose refusals and errors are HTML pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            await resume.load(request)
            response = await answer(request)
            return resume.settle(request, response, _caller(request))

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except CsrfFailed:
                return await _stale_form(request)
            except HTTPException as exc:
                if exc.status_code == 401:
                    return await _signed_out(request, exc)
                if wants_json(request):
                    return JSONResponse({"detail": _detail(exc.detail)}, exc.status_code)
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
                if wants_json(request):
                    return JSONResponse({"detail": sentence(exc)}, exc.status)
                return refusal(request, exc.status, sentence(exc))

        return page_handler
