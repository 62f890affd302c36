"""Who is calling, and what they may do: roles, Argon2 passwords, sessions, tokens, CSRF.

Two ways in:
- **browser session**: `login()` sets the `cctv_session` cookie (256 random bits; HttpOnly,
  SameSite=Lax, Secure over HTTPS). The server keeps only its SHA-256, with an absolute and
  an idle expiry; `logout()` ends it. A cookie-authenticated unsafe request (POST, PUT,
  PATCH, DELETE) must carry the session's CSRF token in the `X-CSRF-Token` header or the
  `csrf_token` form field: `current_user` checks it, so no route can forget.
- **bearer token** for scripts: `Authorization: Bearer cctv_...`, made by
  `cctv-controller user token create`, shown once, stored as its SHA-256. No CSRF check: a
  browser never attaches it on its own.

Failed logins are limited without handing out a lockout: a browser the user has signed in
on before carries a signed device cookie and is limited only by its own failures; any
other is limited per username and per client address (`controller.accounts.logins`). Every
attempt is recorded, and logins, logouts and failures are written to the audit log. The
client address is the peer's, or what a configured proxy forwarded
(`controller.api.proxies`).

Pages and routes use: `current_user` (any signed-in user), `allow(permission)` (a user
whose role has the permission in `controller.accounts.permissions`, the one table of who
may do what), `contractor_scope(user)`, `csrf_token(request)`, `verify_csrf`, `login(...)`,
`logout(...)`. The exceptions are `HTTPException`s whose `detail` is a sentence for the
user.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from pydantic import BaseModel, ConfigDict

from controller.accounts import (
    Accounts,
    AuthSettings,
    LoginRefused,
    LoginResult,
    LoginThrottled,
    Role,
    SignedIn,
    device_cookies,
)
from controller.accounts.model import normalise_username
from controller.accounts.permissions import Permission, roles_for

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "PUBLIC_ENDPOINTS",
    "Accounts",
    "AuthSettings",
    "CsrfFailed",
    "CurrentUser",
    "LoginFailed",
    "LoginResult",
    "NotAuthenticated",
    "Permission",
    "Role",
    "RoleGuard",
    "RoleRefused",
    "TooManyAttempts",
    "User",
    "accounts_of",
    "allow",
    "contractor_scope",
    "cookie_secure",
    "csrf_token",
    "current_user",
    "guard_roles",
    "login",
    "login_csrf",
    "logout",
    "verify_csrf",
]

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class User(BaseModel):
    """The person behind a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    role: Role
    contractor: str | None = None


@dataclass(frozen=True, slots=True)
class _Caller:
    user: User
    via: Literal["session", "token"]
    session_id: str | None = None


class NotAuthenticated(HTTPException):
    def __init__(self, detail: str = "Sign in first: this needs a logged-in user.") -> None:
        super().__init__(401, detail, headers={"WWW-Authenticate": 'Bearer realm="cctv"'})


class RoleRefused(HTTPException):
    def __init__(self, user: User, allowed: tuple[Role, ...]) -> None:
        names = _join([r.label for r in allowed])
        super().__init__(
            403, f"This needs the {names} role; you are signed in as {_article(user.role)}."
        )
        self.user = user
        self.allowed = allowed


class LoginFailed(HTTPException):
    def __init__(self, detail: str = "Wrong username or password.") -> None:
        super().__init__(401, detail)


class TooManyAttempts(HTTPException):
    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(429, detail, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class CsrfFailed(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            403,
            "The request has no valid CSRF token (send the session's token in the "
            f"{CSRF_HEADER} header or the {CSRF_FIELD} form field); reload the page and "
            "try again.",
        )


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _article(role: Role) -> str:
    return ("an " if role.label[0] in "aeiou" else "a ") + role.label


# ------------------------------------------------------------------ session plumbing


def accounts_of(request: Request) -> Accounts:
    """The app's `Accounts` (made by `create_app`)."""
    accounts = getattr(request.app.state, "accounts", None)
    if not isinstance(accounts, Accounts):
        raise RuntimeError("the app has no Accounts: build it with controller.api.app.create_app")
    return accounts


def cookie_secure(request: Request) -> bool:
    """Whether cookies set on this request's response are marked Secure."""
    return accounts_of(request).settings.cookie_secure or request.url.scheme == "https"


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _csrf_for(session_id: str) -> str:
    # Derived, not stored: only the holder of the session id can compute it, and it
    # reveals nothing about the session id itself.
    return hashlib.sha256(b"cctv-csrf\0" + session_id.encode("ascii")).hexdigest()


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's browser session ("" without one), for pages to put in
    a hidden `csrf_token` field or a script to send as `X-CSRF-Token`."""
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, _Caller) and caller.session_id is not None:
        return _csrf_for(caller.session_id)
    session_id = request.cookies.get(accounts_of(request).settings.cookie_name)
    return _csrf_for(session_id) if session_id and session_id.isascii() else ""


async def verify_csrf(request: Request) -> None:
    """Dependency: refuse (403) an unsafe cookie-authenticated request whose CSRF token is
    missing or wrong. Safe methods and bearer-token requests pass."""
    if request.method not in _UNSAFE:
        return
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, _Caller) and caller.via == "token":
        return
    session_id = request.cookies.get(accounts_of(request).settings.cookie_name)
    if not session_id or not session_id.isascii():
        return  # nothing for a forged request to ride on; authentication decides
    sent = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if sent is None and content_type.startswith(_FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), _csrf_for(session_id).encode()):
        raise CsrfFailed()


async def current_user(request: Request) -> User:
    """Dependency: the signed-in user (401 when none). Checks CSRF on unsafe cookie requests."""
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, _Caller):
        return caller.user
    accounts = accounts_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("The Authorization header must be 'Bearer <token>'.")
        found = await accounts.logins.user_for_token(token.strip())
        if found is None:
            raise NotAuthenticated("The API token is unknown, revoked or expired.")
        user = _user(found)
        request.state.caller = _Caller(user, "token")
        return user
    session_id = request.cookies.get(accounts.settings.cookie_name)
    if not session_id or not session_id.isascii():
        raise NotAuthenticated()
    signed_in = await accounts.logins.user_for_session(session_id)
    if signed_in is None:
        raise NotAuthenticated("Your session has ended; sign in again.")
    await verify_csrf(request)
    user = _user(signed_in)
    request.state.caller = _Caller(user, "session", session_id)
    return user


def _user(signed_in: SignedIn) -> User:
    return User(username=signed_in.username, role=signed_in.role, contractor=signed_in.contractor)


CurrentUser = Annotated[User, Depends(current_user)]


class RoleGuard:
    """The dependency made by `allow`: the signed-in user, if their role has `permission`;
    anyone else is refused with 403 and a sentence naming the roles that have it.
    `allowed` says who passes (the API reference page and the tests read it)."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        self.allowed = roles_for(permission)

    async def __call__(self, user: CurrentUser) -> User:
        if user.role not in self.allowed:
            raise RoleRefused(user, self.allowed)
        return user


def allow(permission: Permission) -> RoleGuard:
    """A dependency (`Depends(allow(Permission.VIEW_AUDIT))`) that yields the signed-in user
    if their role has `permission`, and refuses anyone else (403)."""
    return RoleGuard(Permission(permission))


def contractor_scope(user: User) -> str | None:
    """The contractor whose units this user is limited to, or None for the control room."""
    if user.role is Role.CONTRACTOR:
        if not user.contractor:  # refused at creation; never widen to "all units"
            raise RoleRefused(user, tuple(r for r in Role if r is not Role.CONTRACTOR))
        return user.contractor
    return None


# ------------------------------------------------------------------- login / logout


def _set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    max_age: int,
    samesite: Literal["lax", "strict"] = "lax",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite=samesite,
        secure=cookie_secure(request),
    )


async def login(
    request: Request, response: Response, *, username: str, password: str
) -> LoginResult:
    """Check the password, start a session and set its cookie (and a new device cookie for
    this browser) on `response`.

    Raises `LoginFailed` (401) or `TooManyAttempts` (429, with Retry-After)."""
    accounts = accounts_of(request)
    device = request.cookies.get(device_cookies.cookie_name(normalise_username(username)))
    try:
        result = await accounts.logins.login(
            username, password, client=_client(request), device_cookie=device
        )
    except LoginRefused as exc:
        raise LoginFailed(str(exc)) from exc
    except LoginThrottled as exc:
        raise TooManyAttempts(str(exc), exc.retry_after_s) from exc
    settings = accounts.settings
    _set_cookie(
        request, response, settings.cookie_name, result.session_id, settings.session_seconds
    )
    _set_cookie(
        request,
        response,
        device_cookies.cookie_name(result.user.username),
        result.device_cookie,
        settings.device_seconds,
        samesite="strict",
    )
    request.state.caller = _Caller(_user(result.user), "session", result.session_id)
    return result


def login_csrf(result: LoginResult) -> str:
    """The CSRF token of a session just started by `login` (its cookie is not sent yet)."""
    return _csrf_for(result.session_id)


async def logout(request: Request, response: Response) -> bool:
    """End the request's browser session and clear its cookie; False if there was none."""
    accounts = accounts_of(request)
    session_id = request.cookies.get(accounts.settings.cookie_name)
    response.delete_cookie(accounts.settings.cookie_name, path="/", httponly=True, samesite="lax")
    if not session_id or not session_id.isascii():
        return False
    return await accounts.logins.logout(session_id, client=_client(request))


# ------------------------------------------------------------------ who may call what

#: Endpoints open without signing in.
PUBLIC_ENDPOINTS = frozenset({"POST /api/login", "GET /healthz", "GET /metrics"})


def guard_roles(dependant: Dependant) -> tuple[Role, ...] | None:
    """Who may call a route, read from its dependencies: the roles every `RoleGuard` among
    them lets through, every role when it asks only for `current_user`, None when it asks
    for no signed-in user at all."""
    guards: list[RoleGuard] = []
    signed_in = False
    pending = list(dependant.dependencies)
    while pending:
        sub = pending.pop()
        if isinstance(sub.call, RoleGuard):
            guards.append(sub.call)
        signed_in = signed_in or sub.call is current_user
        pending.extend(sub.dependencies)
    if guards:
        return tuple(r for r in Role if all(r in g.allowed for g in guards))
    return tuple(Role) if signed_in else None
