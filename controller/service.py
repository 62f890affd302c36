"""The controller process: one TaskGroup with the broker link, ingest, the periodic jobs,
the notifier, the deployment reviews and the HTTP server.

    service = ControllerService(settings)
    await service.run()          # until service.stop() (SIGTERM / SIGINT in the CLI)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvicorn

from controller.api.app import create_app
from controller.backoff import full_jitter
from controller.callouts import CalloutService, Notifier
from controller.config import ControllerSettings
from controller.deployments import review_job
from controller.errors import StoreError
from controller.evidence.case_jobs import case_job
from controller.evidence.endpoint import serve_retrieval
from controller.fleet import import_units
from controller.fleet.jobs import FleetJobs
from controller.fleet.unit_reports import UnitReports
from controller.ingest import Handler, Ingest
from controller.link import ControllerLink
from controller.metrics import ControllerMetrics
from controller.store.base import Database, is_unavailable
from protocol.messages import utcnow

__all__ = ["ControllerService"]

log = logging.getLogger(__name__)

#: Waits between attempts to reach the database at start: full jitter from
#: DATABASE_WAIT_FLOOR_S, doubling from 1 s up to DATABASE_WAIT_CAP_S.
DATABASE_WAIT_FLOOR_S = 0.5
DATABASE_WAIT_CAP_S = 10.0


class ControllerService:
    def __init__(
        self,
        settings: ControllerSettings,
        *,
        db: Database | None = None,
        link: ControllerLink | None = None,
        metrics: ControllerMetrics | None = None,
        http: bool = True,
        handlers: dict[str, Handler] | None = None,
        extra_tasks: dict[str, Callable[[], Coroutine[Any, Any, None]]] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ControllerMetrics()
        self.db = db or Database(settings.database_url)
        self.link = link or ControllerLink.from_settings(settings, metrics=self.metrics)
        if self.link.metrics is None:
            self.link.metrics = self.metrics
        self.metrics.unacknowledged.set_function(lambda: self.link.unacknowledged)
        self.callouts = CalloutService(settings)
        self.notifier = Notifier(self.db, settings, metrics=self.metrics)
        self.ingest = Ingest(
            self.db,
            settings,
            self.callouts,
            metrics=self.metrics,
            notifier=self.notifier,
            handlers={**UnitReports(self.callouts).handlers(), **(handlers or {})},
            acknowledge=self.link.ack,
        )
        self.jobs = FleetJobs(
            self.db, settings, self.callouts, metrics=self.metrics, notifier=self.notifier
        )
        self.http = http
        #: More long-running jobs for the TaskGroup, by task name (e.g. PIA review reminders).
        self.extra_tasks = dict(extra_tasks or {})
        self._stop = asyncio.Event()
        self.started = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def prepare(self) -> None:
        """Migrate the database and import the fleet's inventory when configured. While
        the database is unavailable (a controller may start before its database), wait
        and try again; any other failure is raised."""
        attempt = 0
        while True:
            try:
                await self.db.migrate()
                break
            except StoreError as exc:
                if not is_unavailable(exc):
                    raise
                delay = full_jitter(
                    attempt, base=1.0, cap=DATABASE_WAIT_CAP_S, floor=DATABASE_WAIT_FLOOR_S
                )
                attempt += 1
                log.error("database unavailable at start, retry in %.1f s: %s", delay, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                if self._stop.is_set():
                    return
        fleet_dir = self.settings.fleet_dir
        if fleet_dir is not None and (Path(fleet_dir) / "units").is_dir():
            async with self.db.session() as session:
                result = await import_units(session, Path(fleet_dir))
                await session.commit()
            log.info("inventory added=%d updated=%d", len(result.added), len(result.updated))

    async def run(self) -> None:
        """The broker link starts at once: messages received while the database is not
        yet ready wait, unacknowledged, within the Receive Maximum. The rest starts once
        the database is migrated; the periodic jobs once the broker's backlog (what was
        queued for the controller while it was away) is stored, so units are not judged
        silent on messages still waiting to be read."""
        failure: BaseException | None = None
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.link.run(self.ingest.submit), name="broker-link")]
            stopping = tg.create_task(self._stop.wait(), name="stop-signal")
            # Not in the TaskGroup: a failed start is raised as itself, not as a group.
            # A stop while preparing lets the migration finish (or the wait for the
            # database end): cancelling a migration half way leaves its connection hanging.
            prepared = asyncio.create_task(self.prepare(), name="prepare")
            try:
                await asyncio.wait({prepared})
            except asyncio.CancelledError:
                prepared.cancel()
                raise
            if prepared.exception() is not None:
                failure = prepared.exception()
                self._stop.set()
            elif not self._stop.is_set():
                _settle_startup_objects()
                tasks += [
                    tg.create_task(self.ingest.run(), name="ingest-writer"),
                    tg.create_task(self._jobs_after_backlog(), name="periodic-jobs"),
                    tg.create_task(self.notifier.run(), name="notifier"),
                    tg.create_task(self._deployment_reviews(), name="deployment-reviews"),
                    tg.create_task(self._case_jobs(), name="case-jobs"),
                    tg.create_task(self._retrieval(), name="evidence-retrieval"),
                ]
                for name, factory in self.extra_tasks.items():
                    tasks.append(tg.create_task(factory(), name=name))
                if self.http:
                    tasks.append(tg.create_task(self._serve_http(), name="http"))
                self.started.set()
            await stopping
            log.info("controller stopping")
            for task in tasks:
                task.cancel()
        if failure is not None:
            raise failure

    async def _jobs_after_backlog(self) -> None:
        limit = self.settings.offline_timeout_s
        try:
            async with asyncio.timeout(limit):
                await self.link.connected.wait()
                while True:  # idle twice, a batch interval apart: the backlog is in
                    await self.ingest.idle()
                    await asyncio.sleep(max(0.2, self.settings.ingest.batch_interval_ms / 500))
                    if self.ingest.is_idle:
                        break
        except TimeoutError:
            log.warning("broker backlog not drained within %.0f s: periodic jobs start", limit)
        await self.jobs.run()

    async def _deployment_reviews(self) -> None:
        """Deployments start and end on their dates, reviews are reminded before they fall
        due, and an authorization the broker has not yet taken is published again."""
        while True:
            try:
                await review_job(self.db, self.link, utcnow(), policy=self.settings.deployments)
            except Exception:  # one bad pass must not stop the controller
                log.exception("deployment review pass failed")
            await asyncio.sleep(max(self.settings.sweep_interval_s, 1.0))

    async def _case_jobs(self) -> None:
        """Subject access reminders and overdue notes; holds sent, re-sent and matched with
        the units' acknowledgements."""
        while True:
            try:
                await case_job(self.db, self.link, utcnow(), settings=self.settings.evidence)
            except Exception:  # one bad pass must not stop the controller
                log.exception("case pass failed")
            await asyncio.sleep(max(self.settings.sweep_interval_s, 1.0))

    async def _retrieval(self) -> None:
        """The evidence endpoint units upload case footage to, and the upload commands."""
        await serve_retrieval(self.settings, self.db, self.link)

    async def _serve_http(self) -> None:
        app = create_app(self.settings, self.db, self.link, registry=self.metrics)
        config = uvicorn.Config(
            app,
            host=self.settings.http.host,
            port=self.settings.http.port,
            log_level="info",
            # The app believes X-Forwarded-* only from http.trusted_proxies
            # (controller.api.proxies); uvicorn's own handling would trust 127.0.0.1.
            proxy_headers=False,
            forwarded_allow_ips=[],
        )
        await uvicorn.Server(config).serve()
        self.stop()  # uvicorn stopped on a signal: stop the rest too


def _settle_startup_objects() -> None:
    """What the process made to start (modules, models, schemas, settings) lives as long
    as it does: collected once, then kept out of the cyclic garbage collector's sight
    (`gc.freeze`), so that the full collections ingest's steady allocation sets off scan
    only what ingest keeps. Without this, full collections take about a fifth of the
    controller's time while it drains a backlog. Once per process (a process running
    several services one after another, as the tests do, settles at the first)."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
