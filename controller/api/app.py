"""The controller's HTTP application: JSON API, /metrics, /healthz.

    app = create_app(settings, db, link)          # link: the broker link, None when offline
    uvicorn.Server(uvicorn.Config(app, proxy_headers=False, ...))

Every error leaves as `{"detail": "<a sentence>"}` with a fitting status; an unexpected
exception is logged and answered with a 500 sentence, never a traceback. Besides the
JSON routes, the app serves the HTML pages (`controller.pages.routes`, which render
their own errors) and the API reference page at /api/docs (`controller.pages.api_docs`).
A browser asking for a page (Accept: text/html) outside /api gets its errors as a page
too (an unknown address, a form's address opened as a page); /api always answers JSON.

At the edge: the client address comes from forwarded headers only when the peer is one
of `http.trusted_proxies` (`controller.api.proxies`; uvicorn's own proxy handling must
stay off), and every route first refuses control characters
(`controller.api.control_characters`). The OpenAPI document (/api/openapi.json) and its
page (/api/docs) are for signed-in users only and load nothing from other sites.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.accounts import Accounts, AuthSettings
from controller.api import (
    account_routes,
    callout_routes,
    case_routes,
    deployment_routes,
    fleet_routes,
    release_routes,
    snapshot_routes,
)
from controller.api.auth import User, current_user
from controller.api.control_characters import refuse_control_characters
from controller.api.proxies import ForwardedClient
from controller.config import ControllerSettings
from controller.errors import INTERNAL_ERROR, ControllerError, LinkError, sentence
from controller.metrics import ControllerMetrics
from controller.pages import api_docs, render
from controller.pages import routes as page_routes
from controller.pages.templating import use_zone
from controller.store.base import DATABASE_ERRORS, Database, is_unavailable

__all__ = ["create_app"]

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 2.0

_PHRASES = {
    404: "There is nothing at {path}.",
    405: "{path} does not accept {method}.",
}
#: The same for a person in a browser.
_PAGE_PHRASES = {
    404: "There is no page at {path}. It may have moved, or the link may be mistyped.",
    405: "{path} is where a form sends what was entered; it is not a page to open.",
}
_NOT_PAGES = ("/api/", "/healthz", "/metrics")


def _wants_page(request: Request) -> bool:
    """A browser asking for a page, outside the JSON API."""
    path = request.url.path
    return "text/html" in request.headers.get("accept", "") and not path.startswith(_NOT_PAGES)


async def _error_page(request: Request, status: int, message: str) -> Response:
    """The refusal page, with the top bar of the signed-in user if there is one."""
    if request.method in ("GET", "HEAD"):
        with contextlib.suppress(HTTPException):  # not signed in: the page offers to
            await current_user(request)  # sign in instead of the top bar
    return render.refusal(request, status, message)


def create_app(
    settings: ControllerSettings,
    db: Database,
    link: Any | None = None,
    *,
    registry: ControllerMetrics | CollectorRegistry | None = None,
    auth: AuthSettings | None = None,
) -> FastAPI:
    """Build the app over an open `Database` (migrated) and the broker link (or None: the
    routes that send commands then answer 503)."""
    app = FastAPI(
        title="CCTV fleet controller",
        summary="Fleet health, maintenance callouts and deployments of deployable CCTV units.",
        version="1",
        # Not FastAPI's own routes: its docs page loads Swagger UI from a CDN into this
        # origin, and both would be open to anyone. See `openapi_document` below.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(refuse_control_characters)],
    )
    app.add_middleware(ForwardedClient, trusted=settings.http.trusted_proxies)
    app.state.settings = settings
    use_zone(settings.zone)
    app.state.db = db
    app.state.link = link
    app.state.accounts = Accounts(db, auth)
    app.state.metrics = registry if registry is not None else ControllerMetrics()
    _install_error_handlers(app)
    app.include_router(account_routes.router)
    app.include_router(fleet_routes.router)
    app.include_router(snapshot_routes.router)
    app.include_router(callout_routes.router)
    app.include_router(deployment_routes.router)
    app.include_router(case_routes.router)
    app.include_router(release_routes.router)
    app.include_router(page_routes.router)
    app.include_router(api_docs.router)

    @app.get("/healthz", tags=["service"], summary="Liveness and database reachability")
    async def healthz() -> JSONResponse:
        database = "ok"
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await db.ping()
        except Exception as exc:  # any failure means "not healthy", reported not raised
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            database = "unreachable"
        flag = getattr(link, "connected", None)
        connected = flag.is_set() if isinstance(flag, asyncio.Event) else bool(flag)
        broker = "absent" if link is None else "connected" if connected else "disconnected"
        healthy = database == "ok"
        return JSONResponse(
            {"status": "ok" if healthy else "failing", "database": database, "broker": broker},
            status_code=200 if healthy else 503,
        )

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi_document(
        _user: Annotated[User, Depends(current_user)],
    ) -> JSONResponse:
        """The OpenAPI document, for signed-in users and API tokens (a client generator
        or a script has a token; an anonymous scanner gets no map of the API)."""
        return JSONResponse(app.openapi())

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics")
    async def metrics() -> Response:
        source = app.state.metrics
        if isinstance(source, ControllerMetrics):
            body, content_type = source.render()
        else:
            body, content_type = generate_latest(source), CONTENT_TYPE_LATEST
        return Response(body, media_type=content_type)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if _wants_page(request) and exc.status_code >= 400:
            detail = exc.detail
            if exc.status_code in _PAGE_PHRASES and detail in (
                None,
                "Not Found",
                "Method Not Allowed",
            ):
                phrase = _PAGE_PHRASES[exc.status_code]
                detail = phrase.format(path=request.url.path, method=request.method)
            response = await _error_page(request, exc.status_code, sentence(str(detail)))
            for name, value in (exc.headers or {}).items():
                response.headers[name] = value
            return response
        detail = exc.detail
        if exc.status_code in _PHRASES and detail in (None, "Not Found", "Method Not Allowed"):
            detail = _PHRASES[exc.status_code].format(path=request.url.path, method=request.method)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(
            {"detail": sentence(str(detail))}, status_code=exc.status_code, headers=exc.headers
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        if _wants_page(request):
            return await _error_page(
                request, 422, sentence("Some values are not valid (" + "; ".join(problems) + ")")
            )
        return JSONResponse(
            {"detail": sentence("The request is not valid (" + "; ".join(problems) + ")")},
            status_code=422,
        )

    async def controller_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ControllerError)
        if exc.status >= 500 and not isinstance(exc, LinkError):
            log.error(
                "request failed path=%s status=%s", request.url.path, exc.status, exc_info=exc
            )
        else:
            log.info(
                "request refused path=%s status=%s error=%s", request.url.path, exc.status, exc
            )
        return JSONResponse({"detail": sentence(exc)}, status_code=exc.status)

    async def unexpected(request: Request, exc: Exception) -> Response:
        if is_unavailable(exc):  # the database is down or restarting: say so, not "a bug"
            log.warning("database unavailable path=%s: %s", request.url.path, exc)
            message = (
                "The database is unavailable just now; the controller keeps trying and "
                "nothing the units send is lost. Try again in a minute."
            )
            html = "text/html" in request.headers.get("accept", "")
            if html and not request.url.path.startswith("/api/"):
                response: Response = render.refusal(request, 503, message)
            else:
                response = JSONResponse({"detail": message}, status_code=503)
            response.headers["Retry-After"] = "30"
            return response
        log.error(
            "unhandled error path=%s method=%s", request.url.path, request.method, exc_info=exc
        )
        if _wants_page(request):
            return render.refusal(request, 500, INTERNAL_ERROR)
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ControllerError, controller_error)
    app.add_exception_handler(Exception, unexpected)
    # Database errors get the same handler, registered by class so that Starlette answers
    # without re-raising (the catch-all above also logs a traceback per request).
    app.add_exception_handler(OSError, unexpected)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, unexpected)
