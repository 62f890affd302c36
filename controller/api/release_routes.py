"""JSON routes for releasing a case's footage and reviewing its exhibits.

    POST /api/cases/{number}/releases                       make an exhibit and release it
                                                            (202 + the job)
    GET  /api/cases/{number}/release-jobs/{job}             the job's progress
    GET  /api/cases/{number}/exhibits                       the case's exhibits
    GET  /api/cases/{number}/exhibits/{part}                one exhibit: release, files
    GET  /api/cases/{number}/exhibits/{part}/download       the exhibit as a zip (logged)
    GET  /api/cases/{number}/exhibits/{part}/footage/{name} a video file, Range (logged)

Making an exhibit and following its job needs `RELEASE_FOOTAGE`; watching and downloading
`VIEW_FOOTAGE` (`controller.accounts.permissions`). Anyone else, contractors first of all,
is refused (403) on every route. The passphrase in the body is never logged or stored. An
error answers with its own `status`, as a sentence (`controller.errors`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse

from controller.api.auth import Permission, User, allow
from controller.api.exhibit_files import (
    download_response,
    exhibit_manifest,
    footage_items,
    footage_response,
    releases_of,
)
from controller.evidence.releases import (
    ReleaseRequest,
    case_exhibits,
    exhibit_number_part,
    exhibit_release,
)
from controller.store.evidence import ExhibitRow, ReleaseRow

__all__ = ["router"]

router = APIRouter(prefix="/api/cases", tags=["evidence"])

Releaser = Annotated[User, Depends(allow(Permission.RELEASE_FOOTAGE))]
Reviewer = Annotated[User, Depends(allow(Permission.VIEW_FOOTAGE))]


@router.post("/{number}/releases", status_code=202, summary="Make an exhibit and release it")
async def post_release(
    request: Request, number: str, body: ReleaseRequest, user: Releaser
) -> JSONResponse:
    """Unlocks the evidence key with the passphrase for this job only, then makes the
    exhibit in the background: poll the job's `progress` URL until `state` is `done`."""
    job = await releases_of(request).start(user, number, body)
    doc = job.as_dict()
    doc["progress"] = f"/api/cases/{number}/release-jobs/{job.id}"
    doc["exhibit_url"] = f"/api/cases/{number}/exhibits/{job.exhibit_part}"
    return JSONResponse(_jsonable(doc), status_code=202)


@router.get("/{number}/release-jobs/{job_id}", summary="Progress of an exhibit being made")
async def get_release_job(
    request: Request, number: str, job_id: str, user: Releaser
) -> dict[str, Any]:
    return _jsonable(releases_of(request).job(number, job_id).as_dict())


def _exhibit_doc(row: ExhibitRow, release: ReleaseRow | None, number: str) -> dict[str, Any]:
    part = exhibit_number_part(row.number)
    doc: dict[str, Any] = {
        "number": row.number,
        "kind": row.kind,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "manifest_sha256": row.manifest_sha256,
        "download": f"/api/cases/{number}/exhibits/{part}/download",
    }
    if release is not None:
        doc["release"] = {
            "released_at": release.released_at.isoformat(),
            "released_by": release.released_by,
            "recipient_name": release.recipient_name,
            "recipient_org": release.recipient_org,
            "reason": release.reason,
            "lawful_basis": release.lawful_basis,
            "reference": release.reference,
            "method": release.method,
            "notes": release.notes,
        }
    return doc


@router.get("/{number}/exhibits", summary="The exhibits made from a case's footage")
async def get_exhibits(request: Request, number: str, user: Reviewer) -> dict[str, Any]:
    async with releases_of(request).db.session() as session:
        _case, rows = await case_exhibits(session, number)
    return {"case": number, "exhibits": [_exhibit_doc(e, r, number) for e, r in rows]}


@router.get("/{number}/exhibits/{part}", summary="One exhibit: its release and its files")
async def get_exhibit(request: Request, number: str, part: str, user: Reviewer) -> dict[str, Any]:
    service = releases_of(request)
    async with service.db.session() as session:
        _case, row = await service.exhibit(session, number, part)
        release = await exhibit_release(session, row)
    manifest = exhibit_manifest(row)
    doc = _exhibit_doc(row, release, number)
    doc["footage"] = [
        {
            "file": item["file"],
            "unit_id": item["unit_id"],
            "start": item["start"],
            "end": item["end"],
            "url": f"/api/cases/{number}/exhibits/{part}/footage/{item['name']}",
        }
        for item in footage_items(manifest)
    ]
    doc["sources"] = manifest.get("sources", [])
    doc["absent"] = manifest.get("absent", [])
    return doc


@router.get("/{number}/exhibits/{part}/download", summary="The exhibit as a zip (logged)")
async def get_download(request: Request, number: str, part: str, user: Reviewer) -> FileResponse:
    return await download_response(request, user, number, part)


@router.get(
    "/{number}/exhibits/{part}/footage/{name}", summary="A video file of the exhibit (logged)"
)
async def get_footage(
    request: Request, number: str, part: str, name: str, user: Reviewer
) -> FileResponse:
    return await footage_response(request, user, number, part, name)


def _jsonable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in doc.items()}
