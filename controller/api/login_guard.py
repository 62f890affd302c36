"""What a login request must show before its password is even checked.

A login has no session yet, so the session's CSRF token cannot guard it. Unguarded, a
page on another site could sign a visitor's browser in as the attacker (login CSRF), and
whatever the victim then did would be done, and audited, as the attacker.

- The sign-in **page** carries a pre-session token, a signed double-submit cookie (OWASP
  CSRF Prevention Cheat Sheet): `GET /login` sets the `cctv_login` cookie (a random
  nonce; HttpOnly, SameSite=Strict, path /login) and puts HMAC(server key, nonce) in the
  form's hidden `csrf_token` field. Another site can neither read the cookie nor make the
  token. `POST /login` without both, or with a token that does not match, is refused with
  a sentence and a fresh form, so a stale form costs one extra click.
- **Both** logins refuse a request the browser says came from another site
  (`Sec-Fetch-Site: cross-site` or `same-site`, W3C Fetch Metadata, sent by current
  browsers; scripts do not send it).
- The **JSON** login (`POST /api/login`, for scripts) needs no cookie and no token but
  takes only `Content-Type: application/json`: a browser sends that type cross-site only
  after a CORS preflight, which this app never grants. Anything else (a form, text/plain,
  no type at all) is refused with 415.

    form = await form_token(request)              # GET /login: form.token in the form,
    form.set_cookie(request, response)            # and its cookie on the response
    await check_form_token(request, sent)         # POST /login: raises LoginFormRefused
    check_same_site(request)                      # raises CrossSiteLogin
    Depends(json_login)                           # POST /api/login
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response

from controller.api.auth import accounts_of, cookie_secure

__all__ = [
    "FORM_COOKIE",
    "FORM_FIELD",
    "CrossSiteLogin",
    "FormToken",
    "LoginFormRefused",
    "NotJson",
    "check_form_token",
    "check_same_site",
    "form_token",
    "json_login",
]

FORM_COOKIE = "cctv_login"
FORM_FIELD = "csrf_token"
#: A sign-in form's token stays good this long after the page was last loaded.
FORM_SECONDS = 24 * 3600
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")
_REFUSED_SITES = frozenset({"cross-site", "same-site"})
_JSON = "application/json"


class LoginFormRefused(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            403,
            "This sign-in form has expired or did not come from this site; sign in again below.",
        )


class CrossSiteLogin(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            403,
            "A sign-in sent from another site is refused; open the controller's own "
            "sign-in page and sign in there.",
        )


class NotJson(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            415, f"Send the username and password as JSON, with Content-Type: {_JSON}."
        )


def _token(key: bytes, nonce: str) -> str:
    return hmac.new(key, b"cctv-login-form\0" + nonce.encode("ascii"), hashlib.sha256).hexdigest()


def _nonce(request: Request) -> str | None:
    value = request.cookies.get(FORM_COOKIE)
    return value if value is not None and _NONCE.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class FormToken:
    """A sign-in form's token and the cookie nonce it is made from."""

    nonce: str
    token: str

    def set_cookie(self, request: Request, response: Response) -> None:
        """(Re)set the form cookie on the response that carries the form."""
        response.set_cookie(
            FORM_COOKIE,
            self.nonce,
            max_age=FORM_SECONDS,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=cookie_secure(request),
        )


async def form_token(request: Request) -> FormToken:
    """The token for a sign-in form. A browser keeps its nonce while it has one, so two
    open sign-in tabs both work."""
    nonce = _nonce(request) or secrets.token_urlsafe(32)
    return FormToken(nonce, _token(await accounts_of(request).logins.signing_key(), nonce))


async def check_form_token(request: Request, sent: str) -> None:
    """Refuse (`LoginFormRefused`) a sign-in form post whose token is missing or does not
    match its cookie."""
    nonce = _nonce(request)
    if nonce is None or not sent or not sent.isascii():
        raise LoginFormRefused()
    expected = _token(await accounts_of(request).logins.signing_key(), nonce)
    if not hmac.compare_digest(sent.encode("ascii"), expected.encode("ascii")):
        raise LoginFormRefused()


def check_same_site(request: Request) -> None:
    """Refuse (`CrossSiteLogin`) a login the browser says another site sent."""
    if request.headers.get("sec-fetch-site", "").strip().lower() in _REFUSED_SITES:
        raise CrossSiteLogin()


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


async def json_login(request: Request) -> None:
    """Dependency of `POST /api/login`: JSON only, and not from another site."""
    check_same_site(request)
    if _media_type(request.headers.get("content-type", "")) != _JSON:
        raise NotJson()
