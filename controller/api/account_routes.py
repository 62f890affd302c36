"""JSON routes for signing in and out, the user list and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from controller import audit
from controller.api.auth import (
    Accounts,
    Permission,
    Role,
    User,
    allow,
    csrf_token,
    current_user,
    login,
    login_csrf,
    logout,
)
from controller.api.login_guard import json_login

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["accounts"])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(_Model):
    username: str = Field(min_length=1, max_length=200, description="Login name")
    password: str = Field(min_length=1, max_length=1024, description="Password")


class SessionInfo(_Model):
    username: str
    role: Role
    contractor: str | None
    csrf_token: str = Field(
        description="Send as X-CSRF-Token (or form field csrf_token) with every POST of this "
        "session"
    )
    expires_at: datetime | None = None


class UserOut(_Model):
    username: str
    role: Role
    contractor: str | None
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class AuditRow(_Model):
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    row_hash: str


class AuditPage(_Model):
    entries: list[AuditRow]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page")


class AuditCheck(_Model):
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    bad_seq: int | None
    reason: str
    summary: str


@router.post(
    "/login",
    response_model=SessionInfo,
    summary="Sign in (starts a browser session)",
    description="Send the credentials as JSON (`Content-Type: application/json`); anything "
    "else is refused with 415. The response sets the session cookie; send the returned "
    "`csrf_token` as `X-CSRF-Token` with every POST of the session.",
    dependencies=[Depends(json_login)],
)
async def post_login(credentials: Credentials, request: Request, response: Response) -> SessionInfo:
    result = await login(
        request, response, username=credentials.username, password=credentials.password
    )
    return SessionInfo(
        username=result.user.username,
        role=result.user.role,
        contractor=result.user.contractor,
        csrf_token=login_csrf(result),
        expires_at=result.expires_at,
    )


@router.post("/logout", status_code=204, summary="Sign out (ends the browser session)")
async def post_logout(
    request: Request, response: Response, _user: Annotated[User, Depends(current_user)]
) -> Response:
    await logout(request, response)
    response.status_code = 204
    return response


@router.get("/me", response_model=SessionInfo, summary="Who is signed in")
async def get_me(request: Request, user: Annotated[User, Depends(current_user)]) -> SessionInfo:
    return SessionInfo(
        username=user.username,
        role=user.role,
        contractor=user.contractor,
        csrf_token=csrf_token(request),
    )


@router.get("/users", response_model=list[UserOut], summary="Every user (managers only)")
async def get_users(
    request: Request, _user: Annotated[User, Depends(allow(Permission.VIEW_USERS))]
) -> list[UserOut]:
    accounts: Accounts = request.app.state.accounts
    return [
        UserOut(
            username=row.username,
            role=Role(row.role),
            contractor=row.contractor,
            disabled=row.disabled,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )
        for row in await accounts.users()
    ]


@router.get("/audit", response_model=AuditPage, summary="The audit log, newest first")
async def get_audit(
    request: Request,
    _user: Annotated[User, Depends(allow(Permission.VIEW_AUDIT))],
    before: Annotated[int | None, Query(ge=1, description="Only rows older than this seq")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    subject: Annotated[str | None, Query(max_length=300)] = None,
    family: Annotated[
        str | None, Query(max_length=100, description="Every action of a family: `callout`")
    ] = None,
    unit: Annotated[str | None, Query(max_length=64, description="Entries about one unit")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Entries at or after (with a zone)")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Entries before (with a zone)")
    ] = None,
) -> AuditPage:
    found = await audit.entries(
        request.app.state.db,
        limit=limit,
        before=before,
        actor=actor,
        action=action,
        subject=subject,
        family=family,
        unit=unit,
        since=since,
        until=until,
    )
    rows = [
        AuditRow(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            action=r.action,
            subject=r.subject,
            details=r.details,
            row_hash=r.row_hash,
        )
        for r in found.records
    ]
    return AuditPage(entries=rows, next_before=found.older)


@router.get("/audit/verify", response_model=AuditCheck, summary="Check the audit hash chain")
async def get_audit_verify(
    request: Request, _user: Annotated[User, Depends(allow(Permission.VIEW_AUDIT))]
) -> AuditCheck:
    result = await audit.verify(request.app.state.db)
    return AuditCheck(
        ok=result.ok,
        rows=result.rows,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        bad_seq=result.bad_seq,
        reason=result.reason,
        summary=str(result),
    )
