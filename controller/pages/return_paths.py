"""Where a browser may be sent back to on this site: `safe_next` keeps a path given in a
request (the page to return to after signing in, a form's `return_to`) only if it stays
on this site; `item_page` names the page of the item an address is about (a refusal
links back to it), and `section_page` the list it belongs to.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import quote, unquote, urlsplit

from controller.accounts.permissions import Permission

__all__ = ["NEXT_MAX", "Link", "item_page", "safe_next", "section_page"]

#: The longest return path kept (a longer one is dropped: the role's start page instead).
NEXT_MAX = 512
#: A return path as sent: "/" then RFC 3986 path, query and fragment characters only: no
#: space, tab, newline, backslash, control or non-ASCII character anywhere.
_NEXT = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%#]*")
_DECODE_ROUNDS = 3


def _decoded(value: str) -> str | None:
    """`value` percent-decoded until it stops changing; None if it never settles."""
    for _ in range(_DECODE_ROUNDS):
        once = unquote(value)
        if once == value:
            return value
        value = once
    return None


def _plain_path(path: str) -> bool:
    return (
        path.startswith("/")
        and not path.startswith(("//", "/\\"))
        and path.isascii()
        and all(" " < c < "\x7f" and c != "\\" for c in path)
    )


def safe_next(value: str | None) -> str | None:
    r"""`value` if it is a path on this site to return to after signing in, else None.

    An allow-list, because browsers are generous readers of URLs: they drop tab and
    newline anywhere and read "\" as "/", so `/<tab>/evil.example` or `/\evil.example`
    leaves the site. Kept only: at most `NEXT_MAX` characters, "/" then RFC 3986 path,
    query and fragment characters; percent-decoded (repeatedly), no control character
    anywhere and a path part that still starts with a single "/" and holds only printable
    ASCII without space or backslash; and neither form parses with a scheme or a host.
    """
    if not value or len(value) > NEXT_MAX or not _NEXT.fullmatch(value):
        return None
    decoded = _decoded(value)
    if decoded is None or any(c < " " or c == "\x7f" for c in decoded):
        return None
    if not _plain_path(value.split("?", 1)[0].split("#", 1)[0]):
        return None
    if not _plain_path(decoded.split("?", 1)[0].split("#", 1)[0]):
        return None
    for form in (value, decoded):
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return None
    return value


class Link(NamedTuple):
    href: str
    label: str
    permission: Permission
    """Who may follow it (a link is offered only to them)."""


#: (first segment, item label, section page, section label, permission to view).
_ITEMS = {
    "callouts": ("callout #{}", "/callouts", "the callouts", Permission.VIEW_CALLOUTS),
    "units": ("unit {}", "/fleet", "the fleet", Permission.VIEW_FLEET),
    "deployments": (
        "deployment {}",
        "/deployments",
        "the deployments",
        Permission.VIEW_DEPLOYMENTS,
    ),
    "locations": ("the location", "/deployments", "the deployments", Permission.VIEW_DEPLOYMENTS),
    "users": ("the users", "/users", "the users", Permission.VIEW_USERS),
}
_NOT_ITEMS = {"new", "board"}


def _segments(path: str) -> list[str]:
    return [unquote(s) for s in path.split("/") if s]


def item_page(path: str) -> Link | None:
    """The page of the item `path` is about (`/callouts/7/acknowledge` -> callout #7's
    page); None when the path is about no one item."""
    parts = _segments(path)
    if len(parts) < 2 or parts[0] not in _ITEMS or parts[1] in _NOT_ITEMS:
        return None
    label, section, _, permission = _ITEMS[parts[0]]
    if parts[0] == "users":
        return Link(section, "Back to the users", permission)
    href = f"/{parts[0]}/{quote(parts[1], safe='')}"
    return Link(href, "Back to " + label.format(parts[1]), permission)


def section_page(path: str) -> Link | None:
    """The list the page at `path` belongs to (`/units/cam-01` -> the fleet)."""
    parts = _segments(path)
    if not parts or parts[0] not in _ITEMS:
        return None
    _, section, words, permission = _ITEMS[parts[0]]
    return Link(section, f"Back to {words}", permission)
