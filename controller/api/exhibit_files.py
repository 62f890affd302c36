"""Serving an exhibit's files to reviewers, for the JSON API and the pages alike: the
footage with Range support (a browser's video player seeks with range requests) and the
whole exhibit as a zip. Each playback and each download is written to the review log
(and the audit chain) before the bytes go out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse

from controller.accounts.permissions import Permission
from controller.api.auth import User
from controller.evidence.cases import require_permission
from controller.evidence.releases import ReleaseService, UnknownExhibit
from controller.evidence.review_log import PlayDebounce, ReviewAction, client_words, log_review
from controller.store.base import utcnow
from controller.store.evidence import CaseRow, ExhibitRow

__all__ = [
    "download_response",
    "exhibit_manifest",
    "footage_items",
    "footage_response",
    "log_exhibit_review",
    "releases_of",
]

_FILE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def releases_of(request: Request) -> ReleaseService:
    """The app's `ReleaseService` (made on first use: it keeps the running jobs)."""
    state = request.app.state
    service = getattr(state, "releases", None)
    if not isinstance(service, ReleaseService):
        service = ReleaseService(state.db, state.settings)
        state.releases = service
        state.play_debounce = PlayDebounce()
    return service


def exhibit_manifest(row: ExhibitRow) -> dict[str, Any]:
    """The exhibit's manifest.json as written (the controller's own file)."""
    try:
        doc = json.loads((Path(row.path) / "manifest.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise UnknownExhibit(f"{row.number} (its files are missing from the store)") from exc
    if not isinstance(doc, dict):
        raise UnknownExhibit(f"{row.number} (its manifest is unreadable)")
    return doc


def footage_items(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The exhibit's video files, each with `name` (its file name) added."""
    items = []
    for item in manifest.get("footage", []):
        items.append({**item, "name": str(item["file"]).rsplit("/", 1)[-1]})
    return items


async def log_exhibit_review(
    request: Request,
    user: User,
    case: CaseRow,
    exhibit: ExhibitRow,
    action: ReviewAction,
    detail: str,
) -> None:
    service = releases_of(request)
    client = client_words(
        request.client.host if request.client else None, request.headers.get("user-agent")
    )
    async with service.db.session() as session:
        await log_review(
            session,
            at=utcnow(),
            user=user.username,
            case_id=case.id,
            case_number=case.number,
            exhibit_id=exhibit.id,
            exhibit_number=exhibit.number,
            action=action,
            client=client,
            detail=detail,
        )
        await session.commit()


async def _exhibit(request: Request, user: User, number: str, part: str, what: str) -> Any:
    require_permission(user, Permission.VIEW_FOOTAGE, what)
    service = releases_of(request)
    async with service.db.session() as session:
        return await service.exhibit(session, number, part)


async def footage_response(
    request: Request, user: User, number: str, part: str, name: str
) -> FileResponse:
    """One video file of the exhibit; a new playback is logged as "played"."""
    case, exhibit = await _exhibit(request, user, number, part, f"watch footage of {number}")
    items = {i["name"]: i for i in footage_items(exhibit_manifest(exhibit))}
    item = items.get(name)
    if item is None:
        raise UnknownExhibit(f"{exhibit.number} file {name}")
    path = Path(exhibit.path) / str(item["file"])
    debounce: PlayDebounce = request.app.state.play_debounce
    if debounce.starts_playback(user.username, exhibit.id, name, request.headers.get("range")):
        detail = f"{name} (unit {item['unit_id']}, {item['start_local']} to {item['end_local']})"
        await log_exhibit_review(request, user, case, exhibit, "played", detail)
    return FileResponse(
        path,
        media_type="video/mp4",
        headers={**_FILE_HEADERS, "Content-Disposition": f'inline; filename="{name}"'},
    )


async def download_response(request: Request, user: User, number: str, part: str) -> FileResponse:
    """The whole exhibit as a zip; logged as "downloaded"."""
    case, exhibit = await _exhibit(request, user, number, part, f"download exhibits of {number}")
    folder = Path(exhibit.path)
    archive = folder.with_name(folder.name + ".zip")
    if not archive.is_file():
        raise UnknownExhibit(f"{exhibit.number} (its download is missing from the store)")
    size = archive.stat().st_size
    await log_exhibit_review(
        request, user, case, exhibit, "downloaded", f"{archive.name} ({size} bytes)"
    )
    return FileResponse(
        archive,
        media_type="application/zip",
        headers={**_FILE_HEADERS, "Content-Disposition": f'attachment; filename="{archive.name}"'},
    )
