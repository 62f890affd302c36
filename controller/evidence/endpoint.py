"""The retrieval side of the controller process: the evidence endpoint units upload to
(when `[evidence.uploads] port` is set) and the periodic pass that sends, re-sends and
matches the units' answers to upload commands (`controller.evidence.retrieval`)."""

from __future__ import annotations

import asyncio
import logging

from controller.config import ControllerSettings
from controller.evidence.receiver import UploadReceiver
from controller.evidence.retrieval import retrieval_job
from controller.evidence.uploads import UploadService
from controller.link import ControllerLink
from controller.store.base import Database, utcnow

__all__ = ["make_receiver", "serve_retrieval"]

log = logging.getLogger(__name__)


def make_receiver(settings: ControllerSettings, db: Database) -> UploadReceiver | None:
    """The endpoint as configured, or None without a port. Raises ConfigError when its
    certificate, key or CA is missing."""
    uploads = settings.evidence.uploads
    if uploads.port is None:
        return None
    files = uploads.files(settings.fleet_dir)
    service = UploadService(
        db, store_dir=settings.evidence.store_dir, max_chunk_bytes=uploads.max_chunk_bytes
    )
    return UploadReceiver(
        service, files, host=uploads.host, port=uploads.port,
        idle_timeout_s=uploads.idle_timeout_s,
    )  # fmt: skip


async def _commands(db: Database, link: ControllerLink, interval_s: float) -> None:
    while True:
        try:
            await retrieval_job(db, link, utcnow())
        except Exception:  # one bad pass must not stop the controller
            log.exception("retrieval pass failed")
        await asyncio.sleep(max(interval_s, 1.0))


async def serve_retrieval(settings: ControllerSettings, db: Database, link: ControllerLink) -> None:
    """Run until cancelled."""
    receiver = make_receiver(settings, db)
    async with asyncio.TaskGroup() as tg:
        if receiver is not None:
            tg.create_task(receiver.run(), name="evidence-endpoint")
        tg.create_task(_commands(db, link, settings.sweep_interval_s), name="upload-commands")
