"""What a person was doing when their session ended: the form they sent, kept for them
until they have signed in again, then offered back on the page the form was on.

A form sent from one of these pages after its session ended (a POST from this site that
still carries the ended session's cookie) is not carried out. Its fields are kept in a
signed cookie (`cctv_resume`: HttpOnly, SameSite=Lax, half an hour), and the browser is
sent to sign in, then back to the page the form was on. There, for the same user only, a
panel says what was not done, with a button that finishes it (with the new session's CSRF
token) and one that drops it. Carrying the action out, or dropping it, clears the cookie.
The same happens when a form of a page opened before the user signed in again is sent
(its CSRF token is the old session's): the action is offered back at once.

Nothing is carried out without the person pressing the button, nothing from another
site is kept (W3C Fetch Metadata, or the Origin header), a form with a password is never
kept (the panel asks for it to be filled in again), and the cookie is signed with the
server's login-cookie key, so a browser cannot make one up.

    await resume.load(request)                     # before a page: request.state.pending
    kept = await resume.keep(request, username)    # a refused POST: (return page, cookie)
    resume.shown_on(request, user)                 # the panel of this page, or None
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from starlette.datastructures import UploadFile

from controller.api.auth import CSRF_FIELD, User, accounts_of, cookie_secure
from controller.pages.model_fields import label_for
from controller.pages.return_paths import item_page, safe_next

__all__ = [
    "COOKIE",
    "KEEP_SECONDS",
    "PendingAction",
    "describe",
    "forget",
    "keep",
    "keeps",
    "load",
    "remember",
    "shown_on",
]

COOKIE = "cctv_resume"
KEEP_SECONDS = 30 * 60
#: Beyond this the form is not kept (a cookie holds about 4 KB); the panel says so.
MAX_COOKIE = 3600
FIELDS_SHOWN = 4
VALUE_SHOWN = 300
_LABEL = b"cctv-resume"
_NOT_KEPT = {CSRF_FIELD, "return_to"}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NEVER_KEPT = frozenset({"/logout", "/resume/discard"})

#: (pattern of the form's address, what pressing its button does).
_ACTIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"/callouts/(?P<id>\d+)/acknowledge", "Acknowledge callout #{id}"),
        (r"/callouts/(?P<id>\d+)/attend", "Mark callout #{id} as attending"),
        (r"/callouts/(?P<id>\d+)/resolve", "Resolve callout #{id}"),
        (r"/callouts/(?P<id>\d+)/verify", "Verify callout #{id}"),
        (r"/callouts/(?P<id>\d+)/close", "Close callout #{id}"),
        (r"/units/(?P<id>[^/]+)/selftest", "Run a self-test of unit {id}"),
        (r"/deployments/new", "Save the deployment request"),
        (r"/deployments/(?P<id>[^/]+)/submit", "Submit deployment {id} for a decision"),
        (r"/deployments/(?P<id>[^/]+)/approve", "Approve deployment {id}"),
        (r"/deployments/(?P<id>[^/]+)/reject", "Reject deployment {id}"),
        (r"/deployments/(?P<id>[^/]+)/revoke", "Revoke deployment {id}"),
        (r"/deployments/(?P<id>[^/]+)/end", "End deployment {id}"),
        (r"/deployments/(?P<id>[^/]+)/not_deploy", "Close deployment {id} as not deployed"),
        (
            r"/deployments/(?P<id>[^/]+)/prior_consultation",
            "Record the ICO consultation on deployment {id}",
        ),
        (r"/locations/new", "Add the location"),
        (r"/users", "Add the user"),
        (r"/users/(?P<id>[^/]+)/disable", "Disable the account of {id}"),
        (r"/users/(?P<id>[^/]+)/enable", "Enable the account of {id}"),
        (r"/users/(?P<id>[^/]+)/change", "Change the role of {id}"),
    )
)


def describe(action: str) -> str:
    """What sending the form at `action` does, as the label of a button."""
    for pattern, words in _ACTIONS:
        found = pattern.fullmatch(action)
        if found:
            return words.format(**found.groupdict())
    return "Send the form again"


@dataclass(frozen=True, slots=True)
class PendingAction:
    """A form sent after its session ended, not carried out."""

    username: str
    action: str
    back: str
    fields: tuple[tuple[str, str], ...]
    kept: bool
    """False: the form could not be kept (too long, or it held a password)."""

    @property
    def label(self) -> str:
        return describe(self.action)

    @property
    def back_path(self) -> str:
        return urlsplit(self.back).path

    @property
    def shown(self) -> list[tuple[str, str]]:
        """What the person had entered, as (label, value), when it is short enough to read."""
        entered = [(name, value) for name, value in self.fields if value.strip()]
        if len(entered) > FIELDS_SHOWN:
            return []
        return [
            (label_for(name.rsplit(".", 1)[-1]), value[:VALUE_SHOWN]) for name, value in entered
        ]


# ----------------------------------------------------------------------- the cookie


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, _LABEL + b"\0" + payload.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _encode(key: bytes, pending: PendingAction) -> str:
    doc = {
        "u": pending.username,
        "a": pending.action,
        "b": pending.back,
        "f": [list(f) for f in pending.fields],
        "k": pending.kept,
        "t": int(time.time()) + KEEP_SECONDS,
    }
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return f"{payload}.{_mac(key, payload)}"


def _decode(key: bytes, value: str) -> PendingAction | None:
    payload, dot, mac = value.partition(".")
    if not dot or not value.isascii() or len(value) > MAX_COOKIE * 2:
        return None
    if not hmac.compare_digest(mac.encode("ascii"), _mac(key, payload).encode("ascii")):
        return None
    try:
        doc: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if int(doc["t"]) < time.time():
            return None
        fields = tuple((str(k), str(v)) for k, v in doc["f"])
        return PendingAction(str(doc["u"]), str(doc["a"]), str(doc["b"]), fields, bool(doc["k"]))
    except (ValueError, KeyError, TypeError):
        return None


async def load(request: Request) -> PendingAction | None:
    """Read the request's kept action (a valid, unexpired cookie) into
    `request.state.pending`; None when there is none."""
    value = request.cookies.get(COOKIE)
    pending = None
    if value:
        pending = _decode(await accounts_of(request).logins.signing_key(), value)
    request.state.pending = pending
    return pending


def remember(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=KEEP_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
    )


def forget(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


def shown_on(request: Request, user: User | None) -> PendingAction | None:
    """The kept action to offer on this page: the user's own, on the page it came from."""
    pending = getattr(request.state, "pending", None)
    if not isinstance(pending, PendingAction) or user is None:
        return None
    if pending.username != user.username or pending.back_path != request.url.path:
        return None
    return pending


def settle(request: Request, response: Response, user: User | None) -> Response:
    """After a page was served to a signed-in user: drop a kept action that is done (its
    form was just sent again, whatever the answer) or not theirs."""
    pending = getattr(request.state, "pending", None)
    if not isinstance(pending, PendingAction) or user is None:
        return response
    done = request.method in _UNSAFE and request.url.path == pending.action
    if done or pending.username != user.username:
        forget(response)
    return response


# --------------------------------------------------------------- keeping a refused form


def from_this_site(request: Request) -> bool:
    """Whether the browser says the request came from a page of this site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.strip().lower() == "same-origin"
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    sent, here = urlsplit(origin), urlsplit(str(request.base_url))
    return (sent.scheme, sent.netloc) == (here.scheme, here.netloc)


def keeps(request: Request) -> bool:
    """Whether the form `request` sends is kept when it cannot be carried out now: one
    from a page of this site that does something (not signing out)."""
    return request.url.path not in _NEVER_KEPT and from_this_site(request)


def _referer_path(request: Request) -> str | None:
    referer = request.headers.get("referer")
    if not referer:
        return None
    sent, here = urlsplit(referer), urlsplit(str(request.base_url))
    if (sent.scheme, sent.netloc) != (here.scheme, here.netloc):
        return None
    return safe_next(sent.path + (f"?{sent.query}" if sent.query else ""))


async def _form_fields(request: Request) -> list[tuple[str, str | UploadFile]]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return []
    try:
        return list((await request.form()).multi_items())
    except Exception:  # a body that is not a form: nothing to keep
        return []


async def return_page(request: Request) -> str:
    """The page a form was sent from: its `return_to`, the Referer, the item it acts on."""
    fields = await _form_fields(request)
    given = next((v for k, v in fields if k == "return_to" and isinstance(v, str)), None)
    back = safe_next(given) or _referer_path(request)
    if back is None:
        item = item_page(request.url.path)
        back = item[0] if item is not None else "/"
    return back


async def keep(request: Request, username: str) -> tuple[str, str]:
    """The page to go back to after signing in, and the signed cookie that keeps the form
    `request` carried for `username` (to be set with `remember`)."""
    back = await return_page(request)
    fields = await _form_fields(request)
    kept = [(k, v) for k, v in fields if k not in _NOT_KEPT and isinstance(v, str)]
    whole = len(kept) == sum(1 for k, _ in fields if k not in _NOT_KEPT) and not any(
        "password" in k.lower() for k, _ in kept
    )
    key = await accounts_of(request).logins.signing_key()
    pending = PendingAction(username, request.url.path, back, tuple(kept), whole)
    cookie = _encode(key, pending)
    if not whole or len(cookie) > MAX_COOKIE:
        cookie = _encode(key, PendingAction(username, request.url.path, back, (), False))
    return back, cookie
