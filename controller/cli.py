"""`cctv-controller`: the control room's command line (thin commands over the library).

    cctv-controller serve --config controller.toml
    cctv-controller units [--json]              cctv-controller units import --fleet DIR
    cctv-controller callouts [--open] [--json]
    cctv-controller audit verify                exit 1 and names the row when tampered
    cctv-controller simulate --units 1000 --interval 30 [--duration 60]

Exit codes: 0 done; 1 the audit chain is broken; 2 bad settings or input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from controller import audit
from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.errors import ControllerError
from controller.fleet import fleet_overview, import_units
from controller.store import Database

__all__ = ["app"]

T = TypeVar("T")
EXIT_TAMPERED = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(name="cctv-controller", help="The CCTV fleet controller.", no_args_is_help=True)
units_app = typer.Typer(help="The unit inventory and its live state.", invoke_without_command=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(units_app, name="units")
app.add_typer(audit_app, name="audit")

try:  # written alongside: user management (the API's accounts)
    from controller.accounts.cli import user_app

    app.add_typer(user_app, name="user")
except ImportError:
    pass
try:
    from controller.evidence.cli import evidence_app

    app.add_typer(evidence_app, name="evidence")
except ImportError:
    pass

console = Console(soft_wrap=True)
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Settings file (TOML); env CCTV_CONTROLLER_* overrides"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _settings(config: Path | None) -> ControllerSettings:
    try:
        return ControllerSettings.load(config)
    except ControllerError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc


def _with_db(settings: ControllerSettings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except ControllerError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc


@app.command()
def serve(config: ConfigOption = None, log_level: str = "INFO") -> None:
    """Run the controller: ingest, periodic jobs, notifications and the web API."""
    from controller.service import ControllerService

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = _settings(config)

    async def main() -> None:
        service = ControllerService(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        try:
            await service.run()
        finally:
            await service.db.dispose()

    try:
        asyncio.run(main())
    except ControllerError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc


@units_app.callback()
def units(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List units in service with their roll-up state."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    settings = _settings(config)

    async def work(db: Database) -> Any:
        async with db.session() as session:
            return await fleet_overview(session)

    overview = _with_db(settings, work)
    if as_json:
        print(overview.model_dump_json(indent=2))
        return
    table = Table(title=f"Units: {overview.counts}")
    for column in ("Unit", "Site", "State", "Online", "Last seen", "Why"):
        table.add_column(column)
    for unit in overview.units:
        seen = f"{unit.last_seen_at:%Y-%m-%d %H:%M:%S}" if unit.last_seen_at else "-"
        table.add_row(
            unit.unit_id,
            unit.site or "",
            unit.state,
            str(unit.online),
            seen,
            "; ".join(unit.reasons),
        )
    console.print(table)


@units_app.command("import")
def units_import(
    ctx: typer.Context,
    fleet: Annotated[Path, typer.Option("--fleet", help="Provisioning fleet directory")],
    config: ConfigOption = None,
) -> None:
    """Register or update the units of a provisioning fleet directory."""
    settings = _settings(config or ctx.obj)

    async def work(db: Database) -> Any:
        async with db.session() as session:
            result = await import_units(session, fleet, actor="cli")
            await session.commit()
            return result

    result = _with_db(settings, work)
    console.print(
        f"added {len(result.added)}, updated {len(result.updated)}, "
        f"unchanged {len(result.unchanged)}"
    )


@app.command()
def callouts(
    config: ConfigOption = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only open callouts")] = False,
    as_json: JsonOption = False,
) -> None:
    """List maintenance callouts, newest first."""
    settings = _settings(config)

    async def work(db: Database) -> Any:
        async with db.session() as session:
            return await CalloutService(settings).list(session, open_only=open_only)

    rows = _with_db(settings, work)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table(title="Callouts")
    for column in ("#", "Unit", "Fault", "P", "Status", "Raised", "Repair by", "Breach"):
        table.add_column(column)
    for row in rows:
        breach = ",".join(
            n for n, b in (("respond", row.respond_breached), ("repair", row.repair_breached)) if b
        )
        table.add_row(
            str(row.id),
            row.unit_id,
            row.fault_code,
            row.priority,
            row.status,
            f"{row.raised_at:%Y-%m-%d %H:%M}",
            f"{row.repair_by:%Y-%m-%d %H:%M}",
            breach,
        )
    console.print(table)


@audit_app.command("verify")
def audit_verify(config: ConfigOption = None) -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first bad row."""
    settings = _settings(config)
    result = _with_db(settings, audit.verify)
    if result.ok:
        console.print(str(result))
        return
    console.print(f"[red]{result}[/red]")
    raise typer.Exit(EXIT_TAMPERED)


@app.command()
def simulate(
    units: Annotated[int, typer.Option(min=1, help="Simulated units")] = 100,
    interval: Annotated[float, typer.Option(min=0.001, help="Heartbeat interval (s)")] = 30.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
    fleet: Annotated[Path | None, typer.Option(help="Fleet dir (default: the settings')")] = None,
    host: Annotated[str | None, typer.Option(help="Broker host (default: the settings')")] = None,
    port: Annotated[int | None, typer.Option(help="Broker port (default: the settings')")] = None,
    state: Annotated[Path, typer.Option(help="Where each unit's seq is kept")] = Path(
        "simulator-seqs.json"
    ),
    prefix: Annotated[str, typer.Option(help="Unit id prefix")] = "sim",
    heartbeats_only: Annotated[
        bool, typer.Option("--heartbeats-only", help="Send nothing but heartbeats")
    ] = False,
    identity: Annotated[
        list[str] | None,
        typer.Option(
            help="Simulator identity to connect as (repeat for more connections; default: "
            "every simulator identity in the fleet)"
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Publish realistic telemetry for N units through the broker.

    One connection per simulator identity (up to one per 2,500 units): the broker ties a
    connection to its certificate, so simulators running at the same time need different
    identities (--identity). Issue more with 'cctv-provision add-client simulator-2' and
    regenerate the broker config."""
    from controller.simulate import Simulator, simulator_identities

    settings = _settings(config)
    fleet_dir = fleet or settings.fleet_dir
    if fleet_dir is None:
        console.print("[red]error:[/red] give --fleet DIR (or fleet_dir in the settings)")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        identities = simulator_identities(fleet_dir, identity)
    except ControllerError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    sim = Simulator(
        host=host or settings.broker.host,
        port=port or settings.broker.port,
        identities=identities,
        units=units,
        interval_s=interval,
        topic_root=settings.broker.topic_root,
        state_file=state,
        prefix=prefix,
        heartbeats_only=heartbeats_only,
    )
    stats = asyncio.run(sim.run(duration))
    print(
        json.dumps(
            {
                "published": stats.published,
                "failed": stats.failed,
                "rate": round(stats.rate, 1),
                "by_kind": stats.by_kind,
            }
        )
    )


if __name__ == "__main__":
    app()
