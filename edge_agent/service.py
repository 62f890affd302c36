"""The agent process: every part of the unit in one TaskGroup.

    capture -> recorder (only while the gate is open and power allows) -> segments + index
    sampler (1 frame/s) -> self-tests at boot, at shift change, on command -> faults
    power monitor -> power telemetry, faults; low battery stops recording cleanly
    link (durable outbox) <- heartbeats, events, reports, acks;  -> commands, authorizations
    uploads -> case footage to the controller's evidence endpoint, on a signed command

On SIGTERM (or SIGINT): the open segment is sealed, the outbox flushed as far as the link
allows, the retained offline state published, and the process exits 0.

`Agent` builds the parts, runs their tasks, publishes and sends the heartbeats; the parts
that react live beside it: `recording_control` (when the recorder runs), `health` (faults
and self-tests), `gate` (the authorization gate and its reports), `power_reports`,
`commands` (verifying each command, and what it does) and `keys` (the enrollment
bundle's keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import signal
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from edge_agent import __version__
from edge_agent.capture.sources import open_source
from edge_agent.commands import CommandActions, CommandProcessor
from edge_agent.config import AgentSettings, RuntimeSettings
from edge_agent.errors import AgentError
from edge_agent.gate import Gate, GateReports
from edge_agent.health import Faults, SelfTests
from edge_agent.keys import load_keys
from edge_agent.link import MessageClass, Outbox, UnitLink
from edge_agent.metrics import AgentMetrics
from edge_agent.position import GpsdClient, Position
from edge_agent.power import PowerMonitor
from edge_agent.power_reports import PowerReports
from edge_agent.recorder.holds import HoldStore
from edge_agent.recorder.index import SegmentIndex
from edge_agent.recorder.recorder import RecorderConfig
from edge_agent.recorder.retention import Retention, RetentionPolicy
from edge_agent.recording_control import RecordingControl
from edge_agent.seen import DurableSeenIds
from edge_agent.selftest import SelfTestRunner, SelfTestThresholds
from edge_agent.selftest.measurements import ClockOffsets, max_clock_age_s, read_temperature
from edge_agent.selftest.suite import LiveSampler, SuiteInputs, build_checks
from edge_agent.systemd import notify, watchdog_interval
from edge_agent.telemetry import MessageBuilder, Telemetry
from edge_agent.uploads import Uploader
from protocol.messages import Command, StorageStatus, utcnow
from protocol.signing import Verifier
from protocol.topics import Topics

__all__ = ["Agent", "run_agent"]

log = logging.getLogger(__name__)
MiB = 1024 * 1024


class _Stopped(Exception):
    """Raised inside the TaskGroup to end it after a clean shutdown."""


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
        keys = load_keys(cfg.keys)
        self.topics = Topics(cfg.broker.topic_root)
        self.outbox = Outbox.open(
            data / "outbox.sqlite", topics=self.topics, max_rows=cfg.link.outbox_max
        )
        self.link = UnitLink(
            cfg.broker, self.outbox, unit_id=cfg.unit_id, agent_version=__version__
        )
        self.telemetry = Telemetry(cfg.unit_id, lambda: self.link.boot_id)
        self.index = SegmentIndex(
            data / "index.sqlite", unit_id=cfg.unit_id, signing_key=keys.signing
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
        self.seen = DurableSeenIds(data / "commands.sqlite")
        verifier = Verifier(keys.controller, unit_id=cfg.unit_id, seen=self.seen)
        fixed = cfg.position.fixed
        self.gate = Gate(
            verifier,
            state_path=data / "gate.json",
            clock=clock,
            fixed_position=Position(lat=fixed[0], lon=fixed[1]) if fixed else None,
        )
        self.faults = Faults(data / "faults.json", telemetry=self.telemetry, publish=self._publish)
        self.settings = RuntimeSettings.from_settings(cfg)
        self._wake = asyncio.Event()  # recording control looks again at once
        self.power_reports: PowerReports | None = None
        self.power: PowerMonitor | None = None
        if cfg.power.source != "none":
            self.power_reports = PowerReports(
                cfg.power,
                unit_id=cfg.unit_id,
                faults=self.faults,
                settings=self.settings,
                telemetry=self.telemetry,
                publish=self._publish,
                spawn=self._spawn,
                on_change=self._wake.set,
            )
            self.power = self.power_reports.monitor
        self.recording = RecordingControl(
            source=self.source,
            index=self.index,
            retention=self.retention,
            evidence_key=keys.evidence,
            recorder_config=RecorderConfig(
                unit_id=cfg.unit_id,
                data_dir=self.segments_dir,
                segment_seconds=cfg.storage.segment_seconds,
            ),
            storage=cfg.storage,
            gate=self.gate,
            power=self.power,
            faults=self.faults,
            telemetry=self.telemetry,
            publish=self._publish,
            spawn=self._spawn,
            wake=self._wake,
            clock=clock,
        )
        self.recorder = self.recording.recorder
        self.sampler = LiveSampler(self.source, data / "baseline.npz")
        self.gate_reports = GateReports(
            self.gate,
            sampler=self.sampler,
            telemetry=self.telemetry,
            publish=self._publish,
            on_change=self._wake.set,
        )
        self.clock_offsets = ClockOffsets(
            max_age_s=lambda: max_clock_age_s(self.settings.selftest_schedule)
        )
        # A segment must have been sealed within two segment lengths, unless configured.
        stall = {"recording_max_age_s": 2.0 * cfg.storage.segment_seconds + 30}
        self.runner = SelfTestRunner(
            build_checks(
                SuiteInputs(
                    sampler=self.sampler,
                    storage_dir=self.segments_dir,
                    newest_segment_end=self.recording.newest_segment_end,
                    newest_segment_intact=self.recording.newest_segment_intact,
                    recording_expected=lambda: self.recording.want()[0],
                    masks=lambda: self.gate.masks,
                    masked_frames=lambda: getattr(self.recorder, "masked_samples", tuple)(),
                    ups_status=self.power.check_now if self.power else None,
                    broker_round_trip=self.link.probe_round_trip,
                    thermal_root=cfg.selftest.thermal_root,
                    ntp_server=cfg.selftest.ntp_server,
                    thresholds=lambda: self.runner.thresholds,
                    clock_offsets=self.clock_offsets,
                )
            ),
            thresholds=SelfTestThresholds().with_overrides({**stall, **cfg.selftest.thresholds}),
            unit_id=cfg.unit_id,
        )
        self.selftests = SelfTests(
            self.runner,
            faults=self.faults,
            settings=self.settings,
            at_boot=cfg.selftest.at_boot,
            timezone=cfg.selftest.timezone,
            telemetry=self.telemetry,
            publish=self._publish,
            clock=clock,
        )
        self.uploader = Uploader(
            cfg.evidence,
            unit_id=cfg.unit_id,
            cert_file=cfg.broker.cert_file,
            key_file=cfg.broker.key_file,
            index=self.index,
            segments_dir=self.segments_dir,
            jobs_dir=data / "uploads",
            clock=clock,
        )
        actions = CommandActions(
            selftests=self.selftests,
            settings=self.settings,
            timezone=cfg.selftest.timezone,
            holds=self.holds,
            index=self.index,
            segments_dir=self.segments_dir,
            exports_dir=data / "exports",
            telemetry=self.telemetry,
            publish=self._publish,
            clock=clock,
            uploads=self.uploader,
            latest_frame=self.source.latest_frame,
        )
        self.commands = CommandProcessor(
            verifier, send_ack=actions.send_ack, actions=actions.handlers()
        )
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics = AgentMetrics(cfg.unit_id)
        self.link.on_command(self._on_command)
        self.link.on_authorization(self.gate_reports.on_authorization)

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
                tg.create_task(self.recording.run(), name="recording-control")
                tg.create_task(self.gate.run(), name="gate-timer")
                tg.create_task(self.gate_reports.run(), name="gate-events")
                if self.cfg.position.gpsd_host:
                    tg.create_task(self._positions(), name="gpsd")
                tg.create_task(self._heartbeats(), name="heartbeats")
                tg.create_task(self._retention(), name="retention")
                tg.create_task(self.selftests.run_schedule(), name="selftest-schedule")
                tg.create_task(self._watchdog(), name="watchdog")
                tg.create_task(self.uploader.run(), name="evidence-uploads")
                if self.power_reports is not None:
                    tg.create_task(self.power_reports.monitor.run(), name="power-monitor")
                    tg.create_task(self.power_reports.run(), name="power-reports")
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
        await self.recording.stop_for_shutdown()
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

    async def _publish(self, build: MessageBuilder, cls: MessageClass | None = None) -> None:
        try:
            await self.link.publish(build, cls)
        except AgentError as exc:  # the outbox disk failing must not stop recording
            log.error("unit=%s message not queued: %s", self.unit_id, exc)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(coro, name="agent-callback")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- position ------------------------------------------------------------------------

    async def _positions(self) -> None:
        client = GpsdClient(
            host=self.cfg.position.gpsd_host or "127.0.0.1", port=self.cfg.position.gpsd_port
        )
        async for fix in client.fixes():
            self.gate.update_position(fix)

    # -- heartbeats, retention, watchdog --------------------------------------------------

    def _storage(self) -> StorageStatus:
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

    def _readings(self) -> tuple[StorageStatus, float | None]:
        """Storage and the unit's temperature (None without a readable sensor)."""
        temperature = read_temperature(self.cfg.selftest.thermal_root)
        return self._storage(), None if temperature is None else round(temperature.celsius, 1)

    async def heartbeat(self) -> None:
        recording, why = self.recording.describe()
        storage, temperature = await asyncio.to_thread(self._readings)
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
                temperature_c=temperature,
                clock_offset_s=self.clock_offsets.latest(),
                open_faults=sorted(set(self.faults.open_faults.values())),
                position=(self.gate.position.lat, self.gate.position.lon)
                if self.gate.position
                else None,
            )
        )

    async def _heartbeats(self) -> None:
        while True:
            await self.heartbeat()
            await asyncio.sleep(self.settings.heartbeat_interval_s)

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


async def run_agent(cfg: AgentSettings) -> None:
    agent = Agent(cfg)
    # Everything made so far (modules, classes, settings) lives as long as the process:
    # out of the collector's reach, the collections that the stream of camera packets
    # triggers look only at young objects instead of the whole heap.
    gc.freeze()
    await agent.run()
