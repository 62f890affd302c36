"""Device cookies: how the controller knows a browser a user has signed in on before.

The scheme is OWASP's "device cookie" defence against both password guessing and
lockout (Authentication Cheat Sheet, "Slow down online guessing attacks with device
cookies"). After a successful login the browser gets a cookie, one per user:

    name   cctv_device_<first 16 hex digits of SHA-256(username)>
    value  <nonce>.<HMAC-SHA256(server key, "cctv-device" NUL username NUL nonce)>

Nobody can make one without the server key (kept in the `server_keys` table), and one
made for a user says nothing about another. The device id written beside a login attempt
is a hash of the nonce, so the database never holds a usable cookie. A new cookie is
given at every successful login (its failure count starts again at zero).

How `controller.accounts.logins` uses it: a login attempt carrying a valid cookie for the
username comes from a *known browser*, limited only by its own failures
(`max_failures_per_device`). Any other attempt is *unknown*, limited by the failures of
unknown browsers for that username (`max_failures_per_user`) and by the failures from its
address (`max_failures_per_client`). So someone guessing passwords from anywhere locks out
only unknown browsers for that username, never the real user on the browser they
normally use, while the guesser stays throttled per username and per address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["COOKIE_PREFIX", "cookie_name", "device_id", "issue", "verify"]

COOKIE_PREFIX = "cctv_device_"
_LABEL = b"cctv-device"
_NONCE_BYTES = 16
_MAX_VALUE = 200


def cookie_name(username: str) -> str:
    """The cookie that holds `username`'s device cookie (usernames are not valid cookie
    names, and a shared browser keeps one per user)."""
    return COOKIE_PREFIX + hashlib.sha256(username.encode("utf-8")).hexdigest()[:16]


def _mac(key: bytes, username: str, nonce: str) -> str:
    message = b"\0".join((_LABEL, username.encode("utf-8"), nonce.encode("ascii")))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def device_id(nonce: str) -> str:
    """What is stored beside a login attempt: not the cookie, a hash of its nonce."""
    return hashlib.sha256(b"cctv-device-id\0" + nonce.encode("ascii")).hexdigest()[:32]


def issue(key: bytes, username: str) -> str:
    """A new device cookie value for `username`."""
    nonce = secrets.token_urlsafe(_NONCE_BYTES)
    return f"{nonce}.{_mac(key, username, nonce)}"


def verify(key: bytes, username: str, value: str | None) -> str | None:
    """The device id of a valid cookie `value` for `username`; None for anything else."""
    if not value or len(value) > _MAX_VALUE or not value.isascii():
        return None
    nonce, dot, mac = value.partition(".")
    if not dot or not nonce:
        return None
    if not hmac.compare_digest(mac.encode("ascii"), _mac(key, username, nonce).encode("ascii")):
        return None
    return device_id(nonce)
