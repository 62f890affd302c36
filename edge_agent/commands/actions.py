"""What the unit does for each command the controller may send, once the processor has
verified it: run a self-test, place or release a hold on footage, change a setting at run
time, stage an export, queue an evidence upload (`edge_agent.uploads`), send a reference
picture of the camera's view; and the
acknowledgements sent back at each step.

`CommandProcessor` (`edge_agent.commands.processor`) decides whether a command runs;
`CommandActions` carries it out. An action that cannot be carried out raises
`CommandFailed` with the reason.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.capture.base import SampledFrame
from edge_agent.capture.reference import NoPicture, take_reference
from edge_agent.commands.processor import AckStatus, ActionHandler, CommandFailed
from edge_agent.config import RuntimeSettings
from edge_agent.errors import AgentError
from edge_agent.health import SelfTests
from edge_agent.recorder.holds import HoldError, HoldStore
from edge_agent.recorder.index import SegmentIndex
from edge_agent.selftest import next_run
from edge_agent.telemetry import Publish, Telemetry
from protocol.messages import (
    CommandBody,
    ReferenceSnapshotRequest,
    ReleaseHold,
    RequestExport,
    SetConfig,
    SetHold,
    UploadEvidence,
)

if TYPE_CHECKING:  # the uploader imports this package (for CommandFailed)
    from edge_agent.uploads import Uploader

__all__ = ["RUNTIME_KEYS", "CommandActions"]

#: Settings a signed set_config command may change at run time.
RUNTIME_KEYS = {"selftest.schedule", "link.heartbeat_interval_s", "link.power_interval_s"}


class CommandActions:
    """The handlers for `CommandProcessor`: `handlers()` and `send_ack`."""

    def __init__(
        self,
        *,
        selftests: SelfTests,
        settings: RuntimeSettings,
        timezone: str,
        holds: HoldStore,
        index: SegmentIndex,
        segments_dir: Path,
        exports_dir: Path,
        telemetry: Telemetry,
        publish: Publish,
        clock: Callable[[], datetime],
        uploads: Uploader | None = None,
        latest_frame: Callable[[], SampledFrame | None],
    ) -> None:
        self._selftests = selftests
        self._settings = settings
        self._timezone = timezone
        self._holds = holds
        self._index = index
        self._segments_dir = segments_dir
        self._exports_dir = exports_dir
        self._telemetry = telemetry
        self._publish = publish
        self._clock = clock
        self._uploads = uploads
        self._latest_frame = latest_frame

    def handlers(self) -> dict[str, ActionHandler]:
        """The action name in a command -> what runs it."""
        return {
            "selftest_now": self._selftest_now,
            "set_hold": self._set_hold,
            "release_hold": self._release_hold,
            "set_config": self._set_config,
            "request_export": self._request_export,
            "upload_evidence": self._upload_evidence,
            "reference_snapshot": self._reference_snapshot,
        }

    async def send_ack(
        self, command_id: str, status: AckStatus, reason: str, result: dict[str, Any]
    ) -> None:
        """The `AckSender` for `CommandProcessor`."""
        await self._publish(self._telemetry.ack(command_id, status, reason, result))

    async def _selftest_now(self, body: CommandBody) -> dict[str, Any]:
        report = await self._selftests.run("command", body.command_id)
        return {"verdict": report.verdict, "failed": [o.name for o in report.failed]}

    async def _set_hold(self, body: CommandBody) -> dict[str, Any]:
        action = body.action
        assert isinstance(action, SetHold)
        try:
            hold = await asyncio.to_thread(
                self._holds.place, action.hold_id, action.start, action.end, action.reference
            )
        except HoldError as exc:
            raise CommandFailed(str(exc)) from exc
        return {"hold_id": hold.hold_id}

    async def _release_hold(self, body: CommandBody) -> dict[str, Any]:
        action = body.action
        assert isinstance(action, ReleaseHold)
        try:
            await asyncio.to_thread(self._holds.release, action.hold_id)
        except HoldError as exc:
            raise CommandFailed(str(exc)) from exc
        return {"hold_id": action.hold_id}

    async def _set_config(self, body: CommandBody) -> dict[str, Any]:
        action = body.action
        assert isinstance(action, SetConfig)
        thresholds = {k: v for k, v in action.values.items() if k.startswith("thresholds.")}
        unknown = set(action.values) - RUNTIME_KEYS - set(thresholds)
        if unknown:
            raise CommandFailed(f"not settable at run time: {', '.join(sorted(unknown))}")
        settings = self._settings
        try:
            if thresholds:
                self._selftests.thresholds = self._selftests.thresholds.with_overrides(thresholds)
            if "selftest.schedule" in action.values:
                schedule = [str(t) for t in action.values["selftest.schedule"]]
                next_run(self._clock(), schedule, self._timezone)  # validates
                settings.selftest_schedule = schedule
            if "link.heartbeat_interval_s" in action.values:
                settings.heartbeat_interval_s = max(
                    5.0, float(action.values["link.heartbeat_interval_s"])
                )
            if "link.power_interval_s" in action.values:
                settings.power_interval_s = max(5.0, float(action.values["link.power_interval_s"]))
        except (TypeError, ValueError, AgentError) as exc:
            raise CommandFailed(f"bad value: {exc}") from exc
        return {"applied": sorted(action.values)}

    async def _request_export(self, body: CommandBody) -> dict[str, Any]:
        """Stage the encrypted segments of a range, with the signed manifest, for the
        engineer to collect: footage never leaves the unit over 4G unasked."""
        action = body.action
        assert isinstance(action, RequestExport)

        def stage() -> dict[str, Any]:
            out = self._exports_dir / action.export_id
            out.mkdir(parents=True, exist_ok=True)
            entries = self._index.entries(start=action.start, end=action.end, include_deleted=False)
            for entry in entries:
                shutil.copy2(self._segments_dir / entry.file_name, out / entry.file_name)
            manifest = self._index.export_manifest([e.segment_id for e in entries])
            (out / "manifest.json").write_bytes(manifest)
            return {"segments": len(entries), "path": str(out)}

        try:
            return await asyncio.to_thread(stage)
        except OSError as exc:
            raise CommandFailed(f"export not staged: {exc.strerror}") from exc

    async def _upload_evidence(self, body: CommandBody) -> dict[str, Any]:
        """Queue the upload of a case's footage to the controller's evidence endpoint in
        this unit's config; `done` means queued (the upload itself reports over HTTPS)."""
        action = body.action
        assert isinstance(action, UploadEvidence)
        if self._uploads is None:
            raise CommandFailed("evidence uploads are not available on this unit")
        return await self._uploads.start_job(body.command_id, action)

    async def _reference_snapshot(self, body: CommandBody) -> dict[str, Any]:
        """Send the camera's latest picture (before privacy masks) on the snapshot channel;
        the acknowledgement follows it, so the controller holds the picture by then."""
        action = body.action
        assert isinstance(action, ReferenceSnapshotRequest)
        try:
            picture = await take_reference(self._latest_frame, now=self._clock)
        except NoPicture as exc:
            raise CommandFailed(str(exc)) from exc
        await self._publish(self._telemetry.snapshot(action.request_id, picture))
        return {
            "request_id": action.request_id,
            "sha256": picture.sha256,
            "bytes": len(picture.jpeg),
            "width": picture.width,
            "height": picture.height,
            "captured_at": picture.captured_at.isoformat(),
        }
