"""The controller's HTTP application: JSON API, /metrics, /healthz.

    app = create_app(settings, db, link)          # link: the broker link, None when offline
    uvicorn.Server(uvicorn.Config(app, proxy_headers=False, ...))

Every error leaves as `{"detail": "<a sentence>"}` with a fitting status; an unexpected
exception is logged and answered with a 500 sentence, never a traceback. Optional
routers are included when their module exists: `controller.api.deployment_routes`,
`controller.pages.routes` (the HTML pages, which render their own errors) and
`controller.pages.api_docs` (the API reference page at /api/docs).

At the edge: the client address comes from forwarded headers only when the peer is one
of `http.trusted_proxies` (`controller.api.proxies`; uvicorn's own proxy handling must
stay off), and every route first refuses control characters
(`controller.api.control_characters`). The OpenAPI document (/api/openapi.json) and its
page (/api/docs) are for signed-in users only and load nothing from other sites.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from types import ModuleType
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.api import account_routes, callout_routes, fleet_routes
from controller.api.accounts import Accounts, AuthSettings
from controller.api.auth import User, allow
from controller.api.control_characters import refuse_control_characters
from controller.api.proxies import ForwardedClient
from controller.config import ControllerSettings
from controller.errors import (
    CalloutError,
    ControllerError,
    LinkError,
    TransitionRefused,
    UnknownCallout,
    UnknownUnitError,
)
from controller.metrics import ControllerMetrics
from controller.store.base import Database, is_unavailable

__all__ = ["OPTIONAL_ROUTERS", "create_app"]

log = logging.getLogger(__name__)

#: Modules whose `router` is included when they exist (built separately).
OPTIONAL_ROUTERS = (
    "controller.api.deployment_routes",
    "controller.api.case_routes",
    "controller.api.release_routes",
    "controller.pages.routes",
    "controller.pages.api_docs",
)
HEALTH_TIMEOUT_S = 2.0

_PHRASES = {
    404: "There is nothing at {path}.",
    405: "{path} does not accept {method}.",
}


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
    app.state.db = db
    app.state.link = link
    app.state.accounts = Accounts(db, auth)
    app.state.metrics = registry if registry is not None else ControllerMetrics()
    _install_error_handlers(app)
    app.include_router(account_routes.router)
    app.include_router(fleet_routes.router)
    app.include_router(callout_routes.router)
    for name in OPTIONAL_ROUTERS:
        module = _optional(name)
        if module is not None:
            app.include_router(module.router)
            install = getattr(module, "install", None)
            if install is not None:  # the module's own error statuses
                install(app)

    @app.get("/healthz", tags=["service"], summary="Liveness and database reachability")
    async def healthz() -> JSONResponse:
        database = "ok"
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S), db.session() as session:
                await session.execute(text("SELECT 1"))
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
        _user: Annotated[User, Depends(allow("GET /api/openapi.json"))],
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


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None  # not built (yet): the app runs without it
        raise


def sentence(message: str) -> str:
    """`"no unit 'x' in the inventory"` -> `"No unit 'x' in the inventory."`"""
    message = message.strip()
    if not message:
        return "The request failed."
    message = message[0].upper() + message[1:]
    return message if message[-1] in ".?!" else message + "."


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
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
        return JSONResponse(
            {"detail": sentence("The request is not valid (" + "; ".join(problems) + ")")},
            status_code=422,
        )

    async def controller_error(request: Request, exc: Exception) -> Response:
        status = 400
        if isinstance(exc, UnknownUnitError | UnknownCallout):
            status = 404
        elif isinstance(exc, TransitionRefused):
            status = 409
        elif isinstance(exc, LinkError):
            status = 503
        elif isinstance(exc, CalloutError):
            status = 409
        log.info("request refused path=%s status=%s error=%s", request.url.path, status, exc)
        return JSONResponse({"detail": sentence(str(exc))}, status_code=status)

    async def unexpected(request: Request, exc: Exception) -> Response:
        if is_unavailable(exc):  # the database is down or restarting: say so, not "a bug"
            log.warning("database unavailable path=%s: %s", request.url.path, exc)
            message = (
                "The database is unavailable just now; the controller keeps trying and "
                "nothing the units send is lost. Try again in a minute."
            )
            render = _optional("controller.pages.render")
            html = "text/html" in request.headers.get("accept", "")
            if render is not None and html and not request.url.path.startswith("/api/"):
                response: Response = render.refusal(request, 503, message)
            else:
                response = JSONResponse({"detail": message}, status_code=503)
            response.headers["Retry-After"] = "30"
            return response
        log.error(
            "unhandled error path=%s method=%s", request.url.path, request.method, exc_info=exc
        )
        return JSONResponse(
            {"detail": "The controller hit an internal error; it has been logged. Try again, "
             "and tell the administrator if it persists."},
            status_code=500,
        )  # fmt: skip

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ControllerError, controller_error)
    app.add_exception_handler(Exception, unexpected)
    # Database errors get the same handler, registered by class so that Starlette answers
    # without re-raising (the catch-all above also logs a traceback per request).
    app.add_exception_handler(OSError, unexpected)
    app.add_exception_handler(DBAPIError, unexpected)
