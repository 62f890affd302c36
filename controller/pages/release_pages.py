"""Releasing a case's footage and reviewing its exhibits, as pages.

    /cases/{number}/release                    the release record and the passphrase (data
                                               controller); POST starts the exhibit
    /cases/{number}/release-jobs/{job}         its progress, refreshed every second
    /cases/{number}/exhibits/{part}            the exhibit: release record, the footage to
                                               watch, its checks, the download (reviewers)
    /cases/{number}/exhibits/{part}/download   the zip
    /cases/{number}/exhibits/{part}/footage/{name}   a video file, with Range support

Making and releasing an exhibit needs `RELEASE_FOOTAGE`, watching and downloading one
`VIEW_FOOTAGE` (`controller.accounts.permissions`, as for the JSON routes). Opening an
exhibit page, playing its footage and downloading it are each written to the review log.
Contractors, operators and auditors are refused every one of these pages. An error is
shown with its own `status` as a sentence (`PageRoute`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from controller.api.auth import Permission, User, allow
from controller.api.exhibit_files import (
    download_response,
    exhibit_manifest,
    footage_items,
    footage_response,
    log_exhibit_review,
    releases_of,
)
from controller.errors import sentence
from controller.evidence.cases import case_with_ranges
from controller.evidence.exhibit_readme import CASE_TYPE_WORDS
from controller.evidence.exhibits import local_words
from controller.evidence.releases import (
    METHODS,
    RELEASABLE,
    ReleaseRequest,
    WrongPassphrase,
    exhibit_release,
)
from controller.pages.render import PageRoute, page
from controller.store.evidence import CaseRangeRow, CaseRow, ReleaseRow

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Releaser = Annotated[User, Depends(allow(Permission.RELEASE_FOOTAGE))]
Reviewer = Annotated[User, Depends(allow(Permission.VIEW_FOOTAGE))]
#: Each form field and its label (the error list names fields by these).
LABELS = {
    "recipient_name": "Recipient's name",
    "recipient_org": "Recipient's organisation",
    "reason": "Reason for the release",
    "lawful_basis": "Lawful basis",
    "reference": "Their reference",
    "method": "Method of transfer",
    "notes": "Notes for the release log",
    "passphrase": "Evidence key passphrase",
}


def _local(value: datetime | None) -> str:
    return local_words(value) if value is not None else ""


async def _case_and_ranges(request: Request, number: str) -> tuple[CaseRow, list[CaseRangeRow]]:
    async with request.app.state.db.session() as session:
        return await case_with_ranges(session, number)


def _form_page(
    request: Request,
    user: User,
    case: CaseRow,
    ranges: list[CaseRangeRow],
    values: Mapping[str, str],
    errors: Mapping[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "release_form.html",
        user,
        title=f"Release footage of case {case.number}",
        status_code=status_code,
        case=case,
        case_type=CASE_TYPE_WORDS.get(case.case_type, case.case_type),
        ranges=[(r.unit_id, _local(r.start), _local(r.end)) for r in ranges],
        values=values,
        errors=errors,
        methods=METHODS,
        labels=LABELS,
        releasable=case.status in RELEASABLE,
    )


@router.get("/cases/{number}/release", response_class=HTMLResponse)
async def release_form(request: Request, number: str, user: Releaser) -> HTMLResponse:
    case, ranges = await _case_and_ranges(request, number)
    values = {
        "recipient_name": case.requester_name,
        "recipient_org": case.requester_org,
        "reason": case.reason,
        "lawful_basis": case.lawful_basis,
        "reference": case.external_ref,
        "method": "",
        "notes": "",
    }
    return _form_page(request, user, case, ranges, values, {})


@router.post("/cases/{number}/release", response_class=HTMLResponse)
async def release_submit(request: Request, number: str, user: Releaser) -> Response:
    form = await request.form()
    values = {name: str(form.get(name) or "") for name in LABELS}
    case, ranges = await _case_and_ranges(request, number)
    shown = {k: v for k, v in values.items() if k != "passphrase"}  # never sent back
    try:
        body = ReleaseRequest.model_validate(values)
    except ValidationError as exc:
        errors = {str(e["loc"][0]): str(e["msg"]) for e in exc.errors() if e["loc"]}
        return _form_page(request, user, case, ranges, shown, errors, 422)
    try:
        job = await releases_of(request).start(user, number, body)
    except WrongPassphrase as exc:
        errors = {"passphrase": sentence(exc)}
        return _form_page(request, user, case, ranges, shown, errors, 422)
    return RedirectResponse(f"/cases/{quote(number)}/release-jobs/{job.id}", status_code=303)


@router.get("/cases/{number}/release-jobs/{job_id}", response_class=HTMLResponse)
async def release_job(request: Request, number: str, job_id: str, user: Releaser) -> HTMLResponse:
    job = releases_of(request).job(number, job_id)
    return page(
        request,
        "release_job.html",
        user,
        title=f"Making exhibit {job.exhibit_number}",
        job=job,
        number=number,
    )


@router.get("/cases/{number}/release-jobs/{job_id}/progress", response_class=HTMLResponse)
async def release_job_progress(
    request: Request, number: str, job_id: str, user: Releaser
) -> HTMLResponse:
    job = releases_of(request).job(number, job_id)
    return page(request, "_release_progress.html", user, title="", job=job, number=number)


def _release_facts(release: ReleaseRow | None) -> list[tuple[str, str]]:
    if release is None:
        return []
    facts = [
        ("Released on", _local(release.released_at)),
        ("Released to", release.recipient_name),
        ("Organisation", release.recipient_org or "not given"),
        ("Released by", release.released_by),
        ("Reason", release.reason),
        ("Lawful basis", release.lawful_basis),
        ("Their reference", release.reference or "none"),
        ("Handed over by", release.method),
    ]
    if release.notes:
        facts.append(("Notes", release.notes))
    return facts


@router.get("/cases/{number}/exhibits/{part}", response_class=HTMLResponse)
async def exhibit_page(request: Request, number: str, part: str, user: Reviewer) -> HTMLResponse:
    service = releases_of(request)
    async with service.db.session() as session:
        case, row = await service.exhibit(session, number, part)
        release = await exhibit_release(session, row)
    manifest = exhibit_manifest(row)
    footage = footage_items(manifest)
    await log_exhibit_review(
        request, user, case, row, "viewed", f"exhibit page with {len(footage)} video file(s)"
    )
    base = f"/cases/{quote(number)}/exhibits/{quote(part)}"
    units: list[dict[str, Any]] = manifest.get("units", [])
    return page(
        request,
        "exhibit.html",
        user,
        title=f"Exhibit {row.number}",
        case=case,
        exhibit=row,
        made_at=_local(row.created_at),
        facts=_release_facts(release),
        footage=[{**item, "url": f"{base}/footage/{quote(item['name'])}"} for item in footage],
        sources=manifest.get("sources", []),
        absent=manifest.get("absent", []),
        units=units,
        signer=manifest.get("signer", {}),
        download_url=f"{base}/download",
    )


@router.get("/cases/{number}/exhibits/{part}/download")
async def exhibit_download(request: Request, number: str, part: str, user: Reviewer) -> Response:
    response: FileResponse = await download_response(request, user, number, part)
    return response


@router.get("/cases/{number}/exhibits/{part}/footage/{name}")
async def exhibit_footage(
    request: Request, number: str, part: str, name: str, user: Reviewer
) -> Response:
    response: FileResponse = await footage_response(request, user, number, part, name)
    return response
