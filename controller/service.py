"""The controller process: one TaskGroup with the broker link, ingest, the periodic jobs,
the notifier and (when `controller.api` is present) the HTTP server.

    service = ControllerService(settings)
    await service.run()          # until service.stop() (SIGTERM / SIGINT in the CLI)
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from controller.bus import ControllerLink
from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.fleet import import_units
from controller.ingest import Handler, Ingest
from controller.jobs import FleetJobs
from controller.metrics import ControllerMetrics
from controller.notify import Notifier
from controller.store.base import Database
from protocol.messages import utcnow

__all__ = ["ControllerService", "load_app_factory"]

log = logging.getLogger(__name__)


def load_app_factory() -> Any | None:
    """`controller.api.app.create_app`, or None when the API is not installed."""
    try:
        module = importlib.import_module("controller.api.app")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("controller.api"):
            return None
        raise
    return getattr(module, "create_app", None)


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
        self.callouts = CalloutService(settings)
        self.notifier = Notifier(self.db, settings, metrics=self.metrics)
        self.ingest = Ingest(
            self.db,
            settings,
            self.callouts,
            metrics=self.metrics,
            notifier=self.notifier,
            handlers=handlers,
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
        """Migrate the database and import the fleet's inventory when configured."""
        await self.db.migrate()
        fleet_dir = self.settings.fleet_dir
        if fleet_dir is not None and (Path(fleet_dir) / "units").is_dir():
            async with self.db.session() as session:
                result = await import_units(session, Path(fleet_dir))
                await session.commit()
            log.info("inventory added=%d updated=%d", len(result.added), len(result.updated))

    async def run(self) -> None:
        await self.prepare()
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.link.run(self.ingest.submit), name="broker-link"),
                tg.create_task(self.ingest.run(), name="ingest-writer"),
                tg.create_task(self.jobs.run(), name="periodic-jobs"),
                tg.create_task(self.notifier.run(), name="notifier"),
                tg.create_task(self._deployment_reviews(), name="deployment-reviews"),
            ]
            for name, factory in self.extra_tasks.items():
                tasks.append(tg.create_task(factory(), name=name))
            if self.http:
                tasks.append(tg.create_task(self._serve_http(), name="http"))
            self.started.set()
            await self._stop.wait()
            log.info("controller stopping")
            for task in tasks:
                task.cancel()

    async def _deployment_reviews(self) -> None:
        """Deployments start and end on their dates, reviews are reminded before they fall
        due, and an authorization the broker has not yet taken is published again."""
        from controller.deployments import review_job

        while True:
            try:
                await review_job(self.db, self.link, utcnow(), policy=self.settings.deployments)
            except Exception:  # one bad pass must not stop the controller
                log.exception("deployment review pass failed")
            await asyncio.sleep(max(self.settings.sweep_interval_s, 1.0))

    async def _serve_http(self) -> None:
        factory = load_app_factory()
        if factory is None:
            log.warning("controller.api is not installed: no HTTP server")
            return
        import uvicorn

        app = factory(self.settings, self.db, self.link, registry=self.metrics)
        config = uvicorn.Config(
            app, host=self.settings.http.host, port=self.settings.http.port, log_level="info"
        )
        await uvicorn.Server(config).serve()
        self.stop()  # uvicorn stopped on a signal: stop the rest too
