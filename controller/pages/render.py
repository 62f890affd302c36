"""How a page is drawn: the Jinja2 environment, the top bar's navigation per role, and the
route class that turns a refusal or an error into an HTML page with a sentence.

    router = APIRouter(route_class=PageRoute)

    @router.get("/fleet")
    async def fleet(request: Request, user: PageUser) -> HTMLResponse:
        return page(request, "fleet.html", user, title="Fleet", units=...)

`PageRoute` catches what a page's dependencies or body raise: no session -> 303 to the login
page (401 for a background refresh), an `HTTPException` -> its status with the detail as a
sentence (403 is the refusal page), a `ControllerError` -> 409 with its message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from controller.api.auth import Role, User, csrf_token
from controller.deployments.errors import (
    InvalidDeployment,
    NotPermitted,
    UnknownDeployment,
    UnknownLocation,
)
from controller.errors import ControllerError, UnknownCallout, UnknownUnitError
from controller.pages.forms import label_for

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

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
PATH_SEPARATOR = "\u203a"
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

_M, _O, _D, _C, _A = (
    Role.MANAGER,
    Role.OPERATOR,
    Role.DATA_CONTROLLER,
    Role.CONTRACTOR,
    Role.AUDITOR,
)


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str
    label: str
    path: str
    roles: frozenset[Role]


NAV: tuple[NavItem, ...] = (
    NavItem("fleet", "Fleet", "/fleet", frozenset({_M, _O, _D, _C, _A})),
    NavItem("callouts", "Callouts", "/callouts", frozenset({_M, _O, _C})),
    NavItem("deployments", "Deployments", "/deployments", frozenset({_M, _O, _D, _A})),
    NavItem("cases", "Cases", "/cases", frozenset({_M, _O, _D, _A})),
    NavItem("evidence-logs", "Evidence logs", "/logs/review", frozenset({_M, _O, _D, _A})),
    NavItem("kpis", "KPIs", "/kpis", frozenset({_M, _A})),
    NavItem("audit", "Audit log", "/audit", frozenset({_M, _A})),
    NavItem("users", "Users", "/users", frozenset({_M})),
)


# ---------------------------------------------------------------- formatting filters


def fmt_when(value: datetime | None, empty: str = "never") -> str:
    """`23 Nov 2026 09:21 UTC`; `empty` for None."""
    if value is None:
        return empty
    return value.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")


def fmt_ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest sensible unit: `42 s ago`, `5 min ago`, `3 h ago`."""
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 0:
        return "just now"
    for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {name} ago"
    return f"{int(seconds)} s ago"


def fmt_bytes(value: int | float | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for name in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or name == "TB":
            return f"{size:.0f} {name}" if name == "B" else f"{size:.1f} {name}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns


def fmt_duration(hours: float | None) -> str:
    if hours is None:
        return "n/a"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def fmt_value(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def fmt_field_path(path: str) -> str:
    """`d.pia.risks.0.title` -> "Privacy impact assessment, then Risks 1, then Title"
    joined by a single right-pointing angle quotation mark."""
    parts: list[str] = []
    for part in path.split(".")[1:]:
        if part.isdigit() and parts:
            parts[-1] += f" {int(part) + 1}"
        else:
            parts.append(label_for(part))
    return f" {PATH_SEPARATOR} ".join(parts) or "The request as a whole"


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters.update(
    when=fmt_when,
    ago=fmt_ago,
    bytes=fmt_bytes,
    duration=fmt_duration,
    pct=fmt_pct,
    value=fmt_value,
    field_path=fmt_field_path,
)
templates.env.globals["Role"] = Role
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


# -------------------------------------------------------------------------- rendering


def nav_for(user: User | None) -> list[NavItem]:
    if user is None:
        return []
    return [item for item in NAV if user.role in item.roles]


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


def _sentence(detail: Any) -> str:
    if isinstance(detail, str) and detail:
        return detail
    return "The request cannot be carried out."


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = " ".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where or 'a value'}: {error.get('msg', 'not valid')}")
    return "Some values are not valid (" + "; ".join(parts) + ")."


def _status(exc: ControllerError) -> int:
    if isinstance(exc, NotPermitted):
        return 403
    if isinstance(exc, UnknownDeployment | UnknownLocation | UnknownUnitError | UnknownCallout):
        return 404
    if isinstance(exc, InvalidDeployment):
        return 422
    return 409


def _capital(text: str) -> str:
    text = text.strip() or "The request cannot be carried out"
    return text[:1].upper() + text[1:].rstrip(".") + "."


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
                        return HTMLResponse(_sentence(exc.detail), status_code=401)
                    target = request.url.path
                    if request.method == "GET" and request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
                response = refusal(request, exc.status_code, _sentence(exc.detail))
                for name, value in (exc.headers or {}).items():
                    response.headers[name] = value
                return response
            except RequestValidationError as exc:
                return refusal(request, 422, _validation_sentence(exc))
            except ControllerError as exc:
                log.info("page=%s refused: %s", request.url.path, exc)
                return refusal(request, _status(exc), _capital(str(exc)))

        return page_handler
