"""`cctv-controller evidence ...`: commands for the data controller.

Exit codes of `import`: 0 every file imported verified; 1 a file was refused (named, with
the reason); 2 the import cannot start (settings, folder, case or unit).

Exit codes of `decrypt`: 0 every supplied segment verified (a segment cut by a power loss
or deleted by retention is reported, not an error); 1 tampering found (a segment altered,
replaced, renamed, missing or not listed, or the manifest fails); 2 the inputs cannot be
used (wrong passphrase, unreadable key or manifest).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from controller.evidence.decrypt import TAMPERING, DecryptReport, EvidenceError, decrypt_segments
from protocol.evidence_keys import EvidenceKeyError, EvidencePrivateKey

__all__ = ["PASSPHRASE_ENV", "evidence_app"]

PASSPHRASE_ENV = "CCTV_EVIDENCE_PASSPHRASE"
EXIT_TAMPERING = 1
EXIT_BAD_INPUT = 2

evidence_app = typer.Typer(
    name="evidence",
    help="Import, verify and decrypt footage from units.",
    no_args_is_help=True,
)


@evidence_app.callback()
def _evidence() -> None:
    """Import, verify and decrypt footage from units."""


def _fail(console: Console, message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(EXIT_BAD_INPUT)


def _unit_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise EvidenceError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceError(f"{path} is not an Ed25519 unit signing key")
    return key


def _evidence_key(path: Path) -> EvidencePrivateKey:
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        passphrase = typer.prompt("Evidence key passphrase", hide_input=True)
    return EvidencePrivateKey.from_encrypted_json(path.read_bytes(), passphrase)


def _table(report: DecryptReport) -> Table:
    table = Table(title=f"Evidence from unit {report.unit_id}")
    for column in ("segment", "file", "result", "chunk", "detail", "output"):
        table.add_column(column)
    for r in report.results:
        style = "red" if r.status in TAMPERING else "green"
        table.add_row(
            r.segment_id or "-",
            r.file or "-",
            f"[{style}]{r.status.value}[/{style}]",
            "-" if r.chunk is None else str(r.chunk),
            r.detail,
            r.output or "-",
        )
    return table


@evidence_app.command("decrypt")
def decrypt(
    segments: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, help="Encrypted segment files (.seg)"),
    ],
    manifest: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="The unit's signed segment manifest"),
    ],
    unit_key: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="Unit signing public key (PEM)"),
    ],
    key: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="Evidence private key file"),
    ],
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for the MP4 files")],
) -> None:
    """Verify exported segments against the unit's signed manifest and write playable MP4s.

    The passphrase is read from $CCTV_EVIDENCE_PASSPHRASE or prompted for.
    A report, report.json, is written beside the MP4 files.
    """
    console = Console()
    try:
        public = _unit_key(unit_key)
        private = _evidence_key(key)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("verifying", total=len(segments))
            report = decrypt_segments(
                segments,
                manifest=manifest.read_bytes(),
                unit_key=public,
                evidence_key=private,
                out_dir=out,
                on_progress=lambda _: progress.advance(task),
            )
    except (EvidenceError, EvidenceKeyError) as exc:
        raise _fail(console, str(exc)) from exc
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n")
    console.print(_table(report))
    if report.tampering:
        console.print("[red]TAMPERING FOUND[/red]: see the rows marked red")
        raise typer.Exit(EXIT_TAMPERING)
    console.print("[green]all supplied segments verified[/green]")


@evidence_app.command("import")
def import_export(
    folder: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, help="A unit's export folder: segments + manifest.json"
        ),
    ],
    case: Annotated[str, typer.Option("--case", help="Case number, e.g. C-2026-0007")],
    unit: Annotated[str, typer.Option("--unit", help="The unit the folder was collected from")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Controller settings file (TOML)"),
    ] = None,
    actor: Annotated[str, typer.Option(help="Who imports it (for the audit log)")] = "cli",
) -> None:
    """Import footage collected from a unit's export folder into a case, with the same
    checks as an upload: the unit's signed manifest, the hash chain, the unit's MQTT
    reports and the SHA-256 of every segment. Refused files are named with the reason."""
    import asyncio

    from controller.config import ControllerSettings
    from controller.errors import ControllerError
    from controller.evidence.importer import import_folder
    from controller.evidence.uploads import UploadService
    from controller.store.base import Database

    console = Console()
    try:
        settings = ControllerSettings.load(config)
    except ControllerError as exc:
        raise _fail(console, str(exc)) from exc

    async def main() -> Any:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            service = UploadService(db, store_dir=settings.evidence.store_dir)
            return await import_folder(
                service, folder, case_number=case, unit_id=unit, actor=f"cli:{actor}",
                on_file=lambda name: console.print(f"checked {name}"),
            )  # fmt: skip
        finally:
            await db.dispose()

    try:
        result = asyncio.run(main())
    except ControllerError as exc:
        raise _fail(console, str(exc)) from exc
    table = Table(title=f"Import into case {case} from unit {unit} ({result.upload_id})")
    for column in ("file", "bytes", "result", "problem"):
        table.add_column(column)
    for f in result.state.files:
        style = "red" if f.status == "refused" else "green"
        table.add_row(f.name, str(f.size), f"[{style}]{f.status}[/{style}]", f.problem or "")
    console.print(table)
    if result.skipped:
        console.print(f"not in the case's ranges, left out: {', '.join(result.skipped)}")
    if result.refused:
        console.print(f"[red]REFUSED[/red]: {', '.join(result.refused)}")
        raise typer.Exit(EXIT_TAMPERING)
    console.print("[green]every file imported verified[/green]")
