"""The agent process: every part of the unit in one TaskGroup.

    capture -> recorder (only while the gate is open and power allows) -> segments + index
    sampler (1 frame/s) -> self-tests at boot, at shift change, on command -> faults
    power monitor -> power telemetry, faults; low battery stops recording cleanly
    link (durable outbox) <- heartbeats, events, reports, acks;  -> commands, authorizations

On SIGTERM (or SIGINT): the open segment is sealed, the outbox flushed as far as the link
allows, the retained offline state published, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import __version__
from edge_agent.capture.base import SourceState
from edge_agent.capture.sources import open_source
from edge_agent.commands import CommandFailed, CommandProcessor
from edge_agent.config import AgentSettings
from edge_agent.errors import AgentError
from edge_agent.gate import Gate
from edge_agent.link import LinkSettings, MessageClass, Outbox, UnitLink
from edge_agent.metrics import AgentMetrics
from edge_agent.position import GpsdClient, Position
from edge_agent.power import NutConfig, PowerEvent, PowerMonitor
from edge_agent.power import PowerConfig as MonitorConfig
from edge_agent.recorder.holds import HoldError, HoldStore
from edge_agent.recorder.index import SegmentIndex
from edge_agent.recorder.recorder import Recorder, RecorderConfig, RecorderState, StopReason
from edge_agent.recorder.retention import Retention, RetentionPolicy
from edge_agent.seen import DurableSeenIds
from edge_agent.selftest import FaultTracker, SelfTestRunner, SelfTestThresholds, next_run
from edge_agent.selftest.runner import SelfTestReport
from edge_agent.selftest.suite import LiveSampler, SuiteInputs, build_checks
from edge_agent.systemd import notify, watchdog_interval
from edge_agent.telemetry import Telemetry
from protocol.evidence_keys import EvidencePublicKey
from protocol.faults import FaultCode
from protocol.messages import (
    Authorization,
    AuthorizationRefused,
    Command,
    CommandBody,
    FaultCleared,
    FaultRaised,
    GateChanged,
    RecordingIndex,
    RecordingStarted,
    RecordingStopped,
    ReleaseHold,
    RequestExport,
    Revocation,
    SegmentSummary,
    SetConfig,
    SetHold,
    utcnow,
)
from protocol.segment_format import inspect_segment
from protocol.signing import Verifier, load_private_key, load_public_key
from protocol.topics import Topics

__all__ = ["Agent", "run_agent"]

log = logging.getLogger(__name__)
MiB = 1024 * 1024
#: Settings a signed set_config command may change at run time.
RUNTIME_KEYS = {"selftest.schedule", "link.heartbeat_interval_s", "link.power_interval_s"}


class _Stopped(Exception):
    """Raised inside the TaskGroup to end it after a clean shutdown."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AgentError(f"cannot read the {what} at {path}: {exc.strerror}") from exc


class Agent:
    def __init__(self, cfg: AgentSettings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.cfg = cfg
        self.unit_id = cfg.unit_id
        self._clock = clock
        self.started = time.monotonic()
        data = cfg.storage.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.segments_dir = data / "segments"
        self.segments_dir.mkdir(exist_ok=True)
        try:
            controller_key = load_public_key(
                _read(cfg.keys.controller_public_key_file, "controller public key")
            )
            signing_key = load_private_key(_read(cfg.keys.signing_key_file, "unit signing key"))
            evidence_key = EvidencePublicKey.from_json(
                _read(cfg.keys.evidence_public_key_file, "evidence public key")
            )
        except ValueError as exc:
            raise AgentError(f"a key in the enrollment bundle is not usable: {exc}") from exc
        assert isinstance(signing_key, Ed25519PrivateKey)
        self.topics = Topics(cfg.broker.topic_root)
        self.outbox = Outbox.open(
            data / "outbox.sqlite", topics=self.topics, max_rows=cfg.link.outbox_max
        )
        b = cfg.broker
        self.link = UnitLink(
            LinkSettings(
                unit_id=cfg.unit_id,
                host=b.host,
                port=b.port,
                topic_root=b.topic_root,
                ca_file=b.ca_file,
                cert_file=b.cert_file,
                key_file=b.key_file,
                agent_version=__version__,
                keepalive_s=b.keepalive_s,
                backoff_base_s=b.backoff_base_s,
                backoff_cap_s=b.backoff_cap_s,
            ),
            self.outbox,
        )
        self.telemetry = Telemetry(cfg.unit_id, lambda: self.link.boot_id)
        self.index = SegmentIndex(
            data / "index.sqlite", unit_id=cfg.unit_id, signing_key=signing_key
        )
        self.holds = HoldStore(data / "holds.sqlite")
        self.retention = Retention(
            index=self.index,
            holds=self.holds,
            data_dir=self.segments_dir,
            policy=RetentionPolicy(
                max_age=timedelta(days=cfg.storage.retention_days),
                min_free_bytes=cfg.storage.min_free_mb * MiB,
            ),
        )
        self.source = open_source(cfg.camera.url)
        self.recorder = Recorder(
            source=self.source,
            index=self.index,
            evidence_key=evidence_key,
            config=RecorderConfig(
                unit_id=cfg.unit_id,
                data_dir=self.segments_dir,
                segment_seconds=cfg.storage.segment_seconds,
            ),
            retention=self.retention,
            on_started=self._recording_started,
            on_stopped=self._recording_stopped,
            on_storage_fault=self._storage_fault,
            on_segment=self._segment_sealed,
        )
        self.seen = DurableSeenIds(data / "commands.sqlite")
        verifier = Verifier(controller_key, unit_id=cfg.unit_id, seen=self.seen)
        fixed = cfg.position.fixed
        self.gate = Gate(
            verifier,
            state_path=data / "gate.json",
            clock=clock,
            fixed_position=Position(lat=fixed[0], lon=fixed[1]) if fixed else None,
        )
        self.commands = CommandProcessor(
            verifier,
            send_ack=self._send_ack,
            actions={
                "selftest_now": self._cmd_selftest,
                "set_hold": self._cmd_hold,
                "release_hold": self._cmd_release,
                "set_config": self._cmd_config,
                "request_export": self._cmd_export,
            },
        )
        self.power: PowerMonitor | None = None
        p = cfg.power
        if p.source != "none":
            self.power = PowerMonitor.from_config(
                MonitorConfig(
                    source=p.source,
                    nut=NutConfig(
                        host=p.nut_host,
                        port=p.nut_port,
                        ups=p.nut_ups,
                        username=p.nut_username,
                        password=p.nut_password,
                    ),
                    sysfs_root=p.sysfs_root,
                    poll_interval_s=p.poll_s,
                    low_charge_pct=p.low_charge_pct,
                ),
                on_event=self._power_event,
                unit_id=cfg.unit_id,
            )
        # A segment must have been sealed within two segment lengths, unless configured.
        stall = {"recording_max_age_s": 2.0 * cfg.storage.segment_seconds + 30}
        self.thresholds = SelfTestThresholds().with_overrides({**stall, **cfg.selftest.thresholds})
        self.schedule = list(cfg.selftest.schedule)
        self.heartbeat_interval = cfg.link.heartbeat_interval_s
        self.power_interval = cfg.link.power_interval_s
        self.sampler = LiveSampler(self.source, data / "baseline.npz")
        self.runner = SelfTestRunner(
            build_checks(
                SuiteInputs(
                    sampler=self.sampler,
                    storage_dir=self.segments_dir,
                    newest_segment_end=self._newest_segment_end,
                    newest_segment_intact=self._newest_segment_intact,
                    recording_expected=lambda: self._want_recording()[0],
                    masks=lambda: self.gate.masks,
                    masked_frames=lambda: getattr(self.recorder, "masked_samples", tuple)(),
                    ups_status=self.power.check_now if self.power else None,
                    broker_round_trip=self.link.probe_round_trip,
                    thermal_root=cfg.selftest.thermal_root,
                    ntp_server=cfg.selftest.ntp_server,
                    thresholds=lambda: self.thresholds,
                )
            ),
            thresholds=self.thresholds,
            unit_id=cfg.unit_id,
        )
        self.faults = FaultTracker()
        self._faults_path = data / "faults.json"
        self._restore_faults()
        self.selftest_lock = asyncio.Lock()
        self.last_report: SelfTestReport | None = None
        self._stop = asyncio.Event()
        self._recording = False
        self._recording_since: datetime | None = None
        self._deployment_for_masks: tuple[Any, ...] | None = None
        self._storage_retry_at = 0.0
        self._storage_halt: str | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics = AgentMetrics(cfg.unit_id)
        self.link.on_command(self._on_command)
        self.link.on_authorization(self._on_authorization)

    # -- lifecycle -----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        log.info(
            "agent starting unit=%s version=%s camera=%s",
            self.unit_id,
            __version__,
            self.source.name,
        )
        await asyncio.to_thread(self.recorder.recover)
        if self.cfg.metrics_port is not None:
            self.metrics.serve(self.cfg.metrics_port)
        self.source.start(None)  # picture for self-tests even while not recording
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.link.run(), name="link")
                tg.create_task(self.sampler.run(), name="sampler")
                tg.create_task(self._recording_control(), name="recording-control")
                tg.create_task(self.gate.run(), name="gate-timer")
                tg.create_task(self._gate_events(), name="gate-events")
                if self.cfg.position.gpsd_host:
                    tg.create_task(self._positions(), name="gpsd")
                tg.create_task(self._heartbeats(), name="heartbeats")
                tg.create_task(self._retention(), name="retention")
                tg.create_task(self._selftest_schedule(), name="selftest-schedule")
                tg.create_task(self._watchdog(), name="watchdog")
                if self.power is not None:
                    tg.create_task(self.power.run(), name="power-monitor")
                    tg.create_task(self._power_reports(), name="power-reports")
                notify("READY=1")
                await self._stop.wait()
                notify("STOPPING=1")
                await self._shutdown()
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            await self._close_stores()
        log.info("agent stopped unit=%s", self.unit_id)

    async def _shutdown(self) -> None:
        """Seal, flush, say offline: before the TaskGroup is cancelled."""
        if self._recording:
            await self.recorder.stop(StopReason.REQUESTED)
            self._recording = False
            await self._publish(self.telemetry.event(RecordingStopped(reason="agent stopping")))
        await self.link.close("shutdown")

    async def _close_stores(self) -> None:
        self.metrics.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.source.stop)
        if self.power is not None:
            with contextlib.suppress(Exception):
                await self.power.aclose()
        for close in (self.outbox.close, self.index.close, self.holds.close, self.seen.close):
            with contextlib.suppress(Exception):
                close()

    async def _publish(self, build: Any, cls: MessageClass | None = None) -> None:
        try:
            await self.link.publish(build, cls)
        except AgentError as exc:  # the outbox disk failing must not stop recording
            log.error("unit=%s message not queued: %s", self.unit_id, exc)

    # -- recording -----------------------------------------------------------------------

    def _want_recording(self) -> tuple[bool, str]:
        if not self.gate.is_open:
            return False, self.gate.reason
        if self.power is not None and not self.power.should_record:
            return False, "battery low: stopped before the power goes"
        if self._storage_halt:
            return False, self._storage_halt
        return True, ""

    async def _recording_control(self) -> None:
        while True:
            want, _ = self._want_recording()
            now = time.monotonic()
            status = self.recorder.status
            if (
                self._recording
                and status.state is RecorderState.STOPPED
                and status.reason in (StopReason.STORAGE_FULL, StopReason.STORAGE_FAILED)
            ):
                self._recording = False
                self._storage_halt = f"storage: {status.reason.value.replace('_', ' ')}"
                self._storage_retry_at = now + self.cfg.storage.retention_interval_s
            if self._storage_halt and now >= self._storage_retry_at:
                self._storage_halt = None
                want, _ = self._want_recording()
            masks_key = (self.gate.deployment_id, tuple(map(tuple, self.gate.masks)))
            if want and masks_key != self._deployment_for_masks:
                self.recorder.set_masks(self.gate.masks)
                self.retention.policy = self.retention.policy.model_copy(
                    update={
                        "max_age": timedelta(
                            days=self.gate.retention_days or self.cfg.storage.retention_days
                        )
                    }
                )
                self._deployment_for_masks = masks_key
            if want and not self._recording:
                await asyncio.to_thread(self.source.stop)
                self._recording_since = self._clock()
                await self.recorder.start()
                self._recording = self.recorder.status.state is not RecorderState.STOPPED
                if not self._recording:
                    self._storage_halt = "storage: held footage fills the disk"
                    self._storage_retry_at = now + self.cfg.storage.retention_interval_s
                    self.source.start(None)
            elif not want and self._recording:
                await self.recorder.stop(StopReason.REQUESTED)
                self._recording = False
                self._recording_since = None
                self.source.start(None)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._wake.wait()

    def _recording_started(self, status: Any) -> None:
        body = RecordingStarted(deployment_id=self.gate.deployment_id)
        self._spawn(self._publish(self.telemetry.event(body)))

    def _recording_stopped(self, status: Any) -> None:
        reason = status.reason.value if status.reason else "stopped"
        why = self._want_recording()[1] or reason.replace("_", " ")
        self._spawn(self._publish(self.telemetry.event(RecordingStopped(reason=why))))

    def _storage_fault(self, code: Any, detail: str) -> None:
        self._spawn(self._raise_fault(code, detail, check="storage"))

    def _segment_sealed(self, summary: Any, chain_hash: str) -> None:
        self._spawn(self._report_segment(summary, chain_hash))

    async def _report_segment(self, summary: Any, chain_hash: str) -> None:
        """Sign a checkpoint of the index's head and tell the controller what was sealed:
        a segment removed, reordered or altered on the unit later is then detectable."""
        checkpoint = await asyncio.to_thread(self.index.checkpoint)
        entry = SegmentSummary(
            segment_id=summary.segment_id,
            started_at=summary.started_at,
            ended_at=summary.ended_at,
            size=summary.file_bytes,
            sha256=summary.file_sha256,
            chain_hash=chain_hash,
            truncated=summary.truncated,
        )
        await self._publish(
            lambda seq: RecordingIndex(
                unit_id=self.unit_id,
                seq=seq,
                sent_at=utcnow(),
                boot_id=self.link.boot_id,
                segments=[entry],
                checkpoint_signature=checkpoint.signature,
            )
        )

    def _newest_segment(self) -> Any:
        entries = self.index.entries(
            start=self._clock() - timedelta(hours=2), include_deleted=False
        )
        return max(entries, key=lambda e: e.ended_at, default=None)

    def _newest_segment_end(self) -> datetime | None:
        """When recording last made progress: the newest segment's end, or the moment
        recording started when its first segment is still open."""
        newest = self._newest_segment()
        ends = [t for t in (newest.ended_at if newest else None, self._recording_since) if t]
        return max(ends, default=None)

    def _newest_segment_intact(self) -> bool:
        """The newest sealed segment reads back whole and matches its index entry (no key
        is needed: the check is on the encrypted file)."""
        newest = self._newest_segment()
        if newest is None:
            return True
        with (self.segments_dir / newest.file_name).open("rb") as f:
            info = inspect_segment(f, segment_id=newest.segment_id)
        summary = info.summary()
        return summary is not None and summary.file_sha256 == newest.sha256

    def _spawn(self, coro: Any) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(coro, name="agent-callback")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- gate ----------------------------------------------------------------------------

    async def _on_authorization(self, message: Authorization | Revocation) -> None:
        outcome = self.gate.handle(message)
        if not outcome.accepted:
            body = AuthorizationRefused(
                authorization_id=outcome.ident[:128],
                reason=outcome.reason.value if outcome.reason else "refused",
                detail=f"{outcome.kind}: {outcome.detail}"[:2000],
            )
            await self._publish(self.telemetry.event(body))
        self._wake.set()

    async def _gate_events(self) -> None:
        """Report what the gate decides (it closes itself at the authorization's end, with
        or without the broker), and react at once."""
        deployment = self.gate.deployment_id
        while True:
            event = await self.gate.wait_for_change()
            if isinstance(event, GateChanged) and event.open and event.deployment_id != deployment:
                self.sampler.reset_baseline()  # a new site: learn its view
                deployment = event.deployment_id
            await self._publish(self.telemetry.event(event))
            self._wake.set()

    async def _positions(self) -> None:
        client = GpsdClient(
            host=self.cfg.position.gpsd_host or "127.0.0.1", port=self.cfg.position.gpsd_port
        )
        async for fix in client.fixes():
            self.gate.update_position(fix)

    # -- faults and self-tests -------------------------------------------------------------

    async def _raise_fault(
        self,
        code: Any,
        detail: str,
        *,
        check: str | None = None,
        facts: dict[str, Any] | None = None,
    ) -> None:
        log.warning("unit=%s fault=%s raised: %s", self.unit_id, code, detail)
        body = FaultRaised(code=code, check=check, detail=detail[:2000], facts=facts or {})
        await self._publish(self.telemetry.event(body))

    async def _clear_fault(self, code: Any, detail: str) -> None:
        log.info("unit=%s fault=%s cleared", self.unit_id, code)
        await self._publish(self.telemetry.event(FaultCleared(code=code, detail=detail[:2000])))

    async def run_selftest(self, trigger: Any, command_id: str | None = None) -> SelfTestReport:
        async with self.selftest_lock:
            report = await self.runner.run(trigger)
            self.last_report = report
            report_id = f"{self.unit_id}-{uuid.uuid4().hex[:12]}"
            await self._publish(
                lambda seq: report.to_message(
                    unit_id=self.unit_id,
                    seq=seq,
                    boot_id=self.link.boot_id,
                    report_id=report_id,
                    command_id=command_id,
                )
            )
            changes = self.faults.update(report.outcomes)
            if changes:
                await asyncio.to_thread(self._save_faults)
            for change in changes:
                if change.kind == "raised":
                    await self._raise_fault(change.fault, change.detail, check=change.check)
                else:
                    await self._clear_fault(change.fault, change.detail)
            return report

    def _restore_faults(self) -> None:
        """Faults open before a restart stay open until their check passes again, so the
        controller is told when they clear."""
        try:
            doc = json.loads(self._faults_path.read_text())
            self.faults.restore({name: FaultCode(code) for name, code in doc.items()})
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError) as exc:
            log.warning("unit=%s open faults not restored: %s", self.unit_id, exc)

    def _save_faults(self) -> None:
        tmp = self._faults_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.value for k, v in self.faults.open_faults.items()}))
        tmp.replace(self._faults_path)

    async def _selftest_schedule(self) -> None:
        if self.cfg.selftest.at_boot:
            await asyncio.sleep(8)  # a few seconds of picture first
            await self.run_selftest("boot")
        while True:
            due = next_run(self._clock(), self.schedule, self.cfg.selftest.timezone)
            delay = max(0.0, (due - self._clock()).total_seconds())
            await asyncio.sleep(min(delay, 60))  # re-evaluate: the schedule may change
            if self._clock() >= due:
                await self.run_selftest("schedule")

    # -- power ---------------------------------------------------------------------------

    def _power_event(self, event: PowerEvent) -> None:
        self._spawn(self._handle_power_event(event))

    async def _handle_power_event(self, event: PowerEvent) -> None:
        snapshot = event.status.model_dump()
        await self._publish(self.telemetry.power(snapshot), MessageClass.ESSENTIAL)
        facts = {k: v for k, v in snapshot.items() if isinstance(v, str | int | float | bool)}
        if event.raised:
            await self._raise_fault(
                event.fault, event.kind.value.replace("_", " "), check="power", facts=facts
            )
        else:
            await self._clear_fault(event.fault, event.kind.value.replace("_", " "))
        self._wake.set()

    async def _power_reports(self) -> None:
        assert self.power is not None
        while True:
            await asyncio.sleep(self.power_interval)
            await self._publish(self.telemetry.power(self.power.status.model_dump()))

    # -- heartbeats, retention, watchdog --------------------------------------------------

    def _storage(self) -> Any:
        usage = shutil.disk_usage(self.segments_dir)
        live = self.index.entries(include_deleted=False)
        return self.telemetry.storage(
            usage.total,
            usage.free,
            sum(e.size for e in live),
            sum(e.size for e in live if e.held),
            len(live),
            min((e.started_at for e in live), default=None),
        )

    async def heartbeat(self) -> None:
        recording = self._recording and self.recorder.status.state is RecorderState.RECORDING
        want, why = self._want_recording()
        if want and not recording:
            state = self.recorder.status
            why = (
                "camera has no signal"
                if self.source.state is SourceState.LOST
                else (state.reason.value.replace("_", " ") if state.reason else "starting")
            )
        storage = await asyncio.to_thread(self._storage)
        m = self.metrics
        m.recording.set(recording)
        m.gate_open.set(self.gate.is_open)
        m.outbox_depth.set(self.link.depth())
        m.outbox_dropped.set(self.link.dropped())
        m.open_faults.set(len(self.faults.open_faults))
        m.storage_free.set(storage.free_bytes)
        m.segments.set(storage.segments)
        await self._publish(
            self.telemetry.heartbeat(
                recording=recording,
                recording_reason="" if recording else why,
                gate_open=self.gate.is_open,
                gate_reason=self.gate.reason,
                deployment_id=self.gate.deployment_id,
                storage=storage,
                outbox_depth=self.link.depth(),
                outbox_dropped=self.link.dropped(),
                uptime_s=time.monotonic() - self.started,
                open_faults=sorted(set(self.faults.open_faults.values())),
                position=(self.gate.position.lat, self.gate.position.lon)
                if self.gate.position
                else None,
            )
        )

    async def _heartbeats(self) -> None:
        while True:
            await self.heartbeat()
            await asyncio.sleep(self.heartbeat_interval)

    async def _retention(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.storage.retention_interval_s)
            report = await asyncio.to_thread(self.retention.sweep)
            if report.deleted:
                log.info("unit=%s retention deleted=%d", self.unit_id, len(report.deleted))
            await asyncio.to_thread(self.seen.prune, self._clock())

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    # -- commands ------------------------------------------------------------------------

    async def _on_command(self, message: Command) -> None:
        # Handlers run on the link's receive task: a self-test takes seconds, so the
        # command runs on its own and the link keeps receiving.
        self._spawn(self.commands.handle(message))

    async def _send_ack(
        self, command_id: str, status: Any, reason: str, result: dict[str, Any]
    ) -> None:
        await self._publish(self.telemetry.ack(command_id, status, reason, result))

    async def _cmd_selftest(self, body: CommandBody) -> dict[str, Any]:
        report = await self.run_selftest("command", body.command_id)
        return {"verdict": report.verdict, "failed": [o.name for o in report.failed]}

    async def _cmd_hold(self, body: CommandBody) -> dict[str, Any]:
        action = body.action
        assert isinstance(action, SetHold)
        try:
            hold = await asyncio.to_thread(
                self.holds.place, action.hold_id, action.start, action.end, action.reference
            )
        except HoldError as exc:
            raise CommandFailed(str(exc)) from exc
        return {"hold_id": hold.hold_id}

    async def _cmd_release(self, body: CommandBody) -> dict[str, Any]:
        action = body.action
        assert isinstance(action, ReleaseHold)
        try:
            await asyncio.to_thread(self.holds.release, action.hold_id)
        except HoldError as exc:
            raise CommandFailed(str(exc)) from exc
        return {"hold_id": action.hold_id}

    async def _cmd_config(self, body: CommandBody) -> dict[str, Any]:
        action = body.action
        assert isinstance(action, SetConfig)
        thresholds = {k: v for k, v in action.values.items() if k.startswith("thresholds.")}
        unknown = set(action.values) - RUNTIME_KEYS - set(thresholds)
        if unknown:
            raise CommandFailed(f"not settable at run time: {', '.join(sorted(unknown))}")
        try:
            if thresholds:
                self.thresholds = self.thresholds.with_overrides(thresholds)
                self.runner.thresholds = self.thresholds
            if "selftest.schedule" in action.values:
                schedule = [str(t) for t in action.values["selftest.schedule"]]
                next_run(self._clock(), schedule, self.cfg.selftest.timezone)  # validates
                self.schedule = schedule
            if "link.heartbeat_interval_s" in action.values:
                self.heartbeat_interval = max(
                    5.0, float(action.values["link.heartbeat_interval_s"])
                )
            if "link.power_interval_s" in action.values:
                self.power_interval = max(5.0, float(action.values["link.power_interval_s"]))
        except (TypeError, ValueError, AgentError) as exc:
            raise CommandFailed(f"bad value: {exc}") from exc
        return {"applied": sorted(action.values)}

    async def _cmd_export(self, body: CommandBody) -> dict[str, Any]:
        """Stage the encrypted segments of a range, with the signed manifest, for the
        engineer to collect: footage never leaves the unit over 4G unasked."""
        action = body.action
        assert isinstance(action, RequestExport)

        def stage() -> dict[str, Any]:
            out = self.cfg.storage.data_dir / "exports" / action.export_id
            out.mkdir(parents=True, exist_ok=True)
            entries = self.index.entries(start=action.start, end=action.end, include_deleted=False)
            for entry in entries:
                shutil.copy2(self.segments_dir / entry.file_name, out / entry.file_name)
            manifest = self.index.export_manifest([e.segment_id for e in entries])
            (out / "manifest.json").write_bytes(manifest)
            return {"segments": len(entries), "path": str(out)}

        try:
            return await asyncio.to_thread(stage)
        except OSError as exc:
            raise CommandFailed(f"export not staged: {exc.strerror}") from exc


async def run_agent(cfg: AgentSettings) -> None:
    agent = Agent(cfg)
    # Everything made so far (modules, classes, settings) lives as long as the process:
    # out of the collector's reach, the collections that the stream of camera packets
    # triggers look only at young objects instead of the whole heap.
    gc.freeze()
    await agent.run()
