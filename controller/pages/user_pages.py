"""The people who sign in, in the browser: a manager adds users, changes a user's role or
contractor, gives a new password, disables and enables accounts. Every change goes through
`controller.accounts.Accounts` (the same as `cctv-controller user`), which writes it to the
audit log; a change that cannot be made is shown beside the form that asked for it."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from controller import audit
from controller.accounts import AccountError, Accounts, Role
from controller.api.auth import Permission, User, allow
from controller.errors import sentence
from controller.fleet.units import units_in_service
from controller.pages.audit_words import entry_words
from controller.pages.render import PageRoute, page
from controller.store.users import UserExists

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Viewer = Annotated[User, Depends(allow(Permission.VIEW_USERS))]
Manager = Annotated[User, Depends(allow(Permission.MANAGE_USERS))]
NAME_MAX = 64
ACTIVITY_SHOWN = 10
#: ?done= on the pages -> the notice shown.
DONE = {
    "added": "User {ref} added.",
    "changed": "The role of {ref} has been changed.",
    "password": "{ref} has a new password; their sessions have ended.",
    "disabled": "{ref} is disabled: their sessions have ended and their API tokens are revoked.",
    "enabled": "{ref} can sign in again.",
}
ROLE_WORDS = {
    Role.MANAGER: "Everything: decides deployments, manages users, reads the audit log.",
    Role.OPERATOR: "Runs the fleet: callouts, self-tests, deployment requests.",
    Role.DATA_CONTROLLER: "Footage and the fleet's state; no callouts or deployments decisions.",
    Role.CONTRACTOR: "Maintenance only: the callouts and units on their company's contract.",
    Role.AUDITOR: "Reads callouts, deployments, KPIs and the audit log; changes nothing.",
}


def _accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done", "")
    ref = request.query_params.get("ref", "")
    ref = "".join(c for c in ref if c.isalnum() or c in "._@-")[:NAME_MAX]
    return DONE[done].format(ref=ref) if done in DONE else None


def _back(username: str, done: str) -> RedirectResponse:
    query = urlencode({"done": done, "ref": username})
    return RedirectResponse(f"/users/{quote(username)}?{query}", status_code=303)


async def _contractors(request: Request) -> list[str]:
    """The contractor names of the fleet inventory and of the contractor users."""
    async with request.app.state.db.session() as session:
        units = await units_in_service(session)
    names = {u.contractor for u in units if u.contractor}
    names |= {u.contractor for u in await _accounts(request).users() if u.contractor}
    return sorted(names)


async def _list_page(
    request: Request,
    user: User,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "users.html",
        user,
        title="Users",
        section="users",
        status_code=status_code,
        notice=_notice(request),
        rows=await _accounts(request).users(),
        roles=list(Role),
        role_words=ROLE_WORDS,
        contractors=await _contractors(request),
        values=values or {},
        errors=errors or {},
    )


async def _user_page(
    request: Request,
    user: User,
    username: str,
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    row = await _accounts(request).user(username)
    activity = await audit.entries(
        request.app.state.db, limit=ACTIVITY_SHOWN, subject=f"user:{row.username}"
    )
    return page(
        request,
        "user.html",
        user,
        title=f"User {row.username}",
        section="users",
        status_code=status_code,
        notice=_notice(request),
        row=row,
        role=Role(row.role),
        roles=list(Role),
        role_words=ROLE_WORDS,
        contractors=await _contractors(request),
        activity=[(r.at, entry_words(r)) for r in activity.records],
        errors=errors or {},
        yourself=row.username == user.username,
    )


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, user: Viewer) -> HTMLResponse:
    return await _list_page(request, user)


@router.get("/users/{username}", response_class=HTMLResponse)
async def user_page(request: Request, username: str, user: Viewer) -> HTMLResponse:
    return await _user_page(request, user, username)


Name = Annotated[str, Form(max_length=200)]
Text = Annotated[str, Form(max_length=200)]
Password = Annotated[str, Form(max_length=1024)]


@router.post("/users")
async def add_user(
    request: Request,
    user: Manager,
    username: Name = "",
    role: Text = "",
    contractor: Text = "",
    password: Password = "",
    confirm: Password = "",
) -> Response:
    values = {"username": username, "role": role, "contractor": contractor}
    errors = _password_errors(password, confirm)
    if not username.strip():
        errors["username"] = "Enter a username."
    if role not in {r.value for r in Role}:
        errors["role"] = "Choose a role."
    if not errors:
        try:
            added = await _accounts(request).add_user(
                username, role, password, contractor=contractor or None, actor=user.username
            )
        except UserExists as exc:
            errors["username"] = sentence(exc)
        except AccountError as exc:
            errors[_field_of(exc)] = sentence(exc)
        else:
            return _back(added.username, "added")
    return await _list_page(request, user, values=values, errors=errors, status_code=422)


@router.post("/users/{username}/{change}")
async def change_user(
    request: Request,
    username: str,
    change: str,
    user: Manager,
    role: Text = "",
    contractor: Text = "",
    password: Password = "",
    confirm: Password = "",
) -> Response:
    accounts = _accounts(request)
    errors: dict[str, str] = {}
    try:
        if change == "change":
            await accounts.change_user(
                username, role=role, contractor=contractor or None, actor=user.username
            )
            return _back(username, "changed")
        if change == "password":
            errors = _password_errors(password, confirm)
            if not errors:
                await accounts.set_password(username, password, actor=user.username)
                return _back(username, "password")
        elif change in ("disable", "enable"):
            await accounts.set_disabled(username, change == "disable", actor=user.username)
            return _back(username, f"{change}d")
        else:
            raise HTTPException(404, f"{change!r} is not a change that can be made to a user.")
    except AccountError as exc:
        errors[_field_of(exc) if change != "disable" else "disable"] = sentence(exc)
    return await _user_page(request, user, username, errors=errors, status_code=422)


def _password_errors(password: str, confirm: str) -> dict[str, str]:
    if not password:
        return {"password": "Enter a password."}
    if password != confirm:
        return {"confirm": "The two passwords are not the same."}
    return {}


def _field_of(error: AccountError) -> str:
    """Which field of the forms an account error is about (shown beside it)."""
    text = str(error)
    if "already" in text:
        return "form"
    for field, words in (
        ("username", "username"),
        ("password", "password"),
        ("contractor", "contractor"),
        ("role", "role"),
    ):
        if words in text:
            return field
    return "form"
