"""`cctv-provision`: the fleet's CA, identities, enrollment bundles and broker config.

Thin commands over `provisioning.fleet` and `provisioning.broker`. Exit codes: 0 done,
2 wrong input or refused (one line on stderr), 1 an operating-system failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from protocol.evidence_keys import EvidenceSuite
from protocol.topics import DEFAULT_ROOT
from provisioning.broker import write_broker_config
from provisioning.clients import CENTRE_ROLES
from provisioning.config import ValiditySettings
from provisioning.errors import InvalidInput, ProvisioningError
from provisioning.fleet import Fleet
from provisioning.pki import Role

__all__ = ["PASSPHRASE_ENV", "app"]

PASSPHRASE_ENV = "CCTV_EVIDENCE_PASSPHRASE"
FLEET_ENV = "CCTV_FLEET_DIR"
EXIT_INPUT = 2
EXIT_OS = 1


class _OneLineErrors(TyperGroup):
    """Every refusal is one line on stderr (`error: ...`) and a meaningful exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ProvisioningError as exc:
            _fail(str(exc), EXIT_INPUT)
        except typer.TyperException as exc:  # usage errors (typer vendors click)
            code = int(getattr(exc, "exit_code", EXIT_INPUT))
            message = getattr(exc, "format_message", exc.__str__)()
            _fail(f"{message} (see --help)" if code == EXIT_INPUT else message, code)
        except typer.Abort:
            _fail("aborted", EXIT_OS)
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), EXIT_OS)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


app = typer.Typer(
    cls=_OneLineErrors,
    name="cctv-provision",
    help="Create and run a CCTV fleet's identities: the fleet CA, unit enrollment bundles, "
    "the controller's and broker's certificates, the Mosquitto config and ACL, revocation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    ctx: typer.Context,
    fleet: Annotated[
        Path,
        typer.Option(
            "--fleet",
            envvar=FLEET_ENV,
            help=f"Fleet directory (or set {FLEET_ENV}).",
            show_default=True,
        ),
    ] = Path("fleet"),
) -> None:
    ctx.obj = fleet


def _open(ctx: typer.Context) -> Fleet:
    return Fleet.open(ctx.obj)


def _passphrase() -> str:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    try:
        value: str = typer.prompt(
            "Evidence key passphrase (held by the data controller)",
            hide_input=True,
            confirmation_prompt=True,
            err=True,
        )
    except typer.Abort as exc:
        raise InvalidInput(
            f"no evidence key passphrase: run in a terminal or set {PASSPHRASE_ENV}"
        ) from exc
    return value


@app.command()
def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Organisation / fleet name (in certificates).")] = (
        "CCTV fleet"
    ),
    host: Annotated[
        list[str] | None,
        typer.Option(
            help="Broker address the units dial (repeat for more names in the broker "
            "certificate; the first one goes into agent.toml). Loopback is always included."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Broker TLS port.", min=1, max=65535)] = 8883,
    topic_root: Annotated[str, typer.Option(help="MQTT topic root.")] = DEFAULT_ROOT,
    evidence_suite: Annotated[
        EvidenceSuite, typer.Option(help="HPKE suite of the evidence key.")
    ] = EvidenceSuite.X25519,
    cert_days: Annotated[int, typer.Option(help="Validity of issued certificates.", min=1)] = 730,
    ca_days: Annotated[int, typer.Option(help="Validity of the CA.", min=1)] = 3650,
    crl_days: Annotated[int, typer.Option(help="Validity of each CRL.", min=1)] = 365,
    uploads_host: Annotated[
        str | None,
        typer.Option(
            help="Address units reach the controller's evidence upload endpoint at "
            "(default: the first broker address)."
        ),
    ] = None,
    uploads_port: Annotated[
        int, typer.Option(help="HTTPS port of the evidence upload endpoint.", min=1, max=65535)
    ] = 8443,
    force: Annotated[bool, typer.Option(help="Replace an existing fleet (destroys its CA).")] = (
        False
    ),
) -> None:
    """Create the fleet: CA, broker and controller identities, signing and evidence keys.

    The evidence private key is sealed under a passphrase read from a hidden prompt or from
    the environment variable CCTV_EVIDENCE_PASSPHRASE, never from the command line."""
    hosts = host or ["127.0.0.1"]
    fleet = Fleet.create(
        ctx.obj,
        name=name,
        evidence_passphrase=_passphrase(),
        evidence_suite=evidence_suite,
        broker_host=hosts[0],
        broker_port=port,
        extra_hosts=tuple(hosts[1:]),
        topic_root=topic_root,
        validity=ValiditySettings(ca_days=ca_days, cert_days=cert_days, crl_days=crl_days),
        uploads_host=uploads_host,
        uploads_port=uploads_port,
        force=force,
    )
    typer.echo(f"fleet {name!r} created in {fleet.root}")
    typer.echo(f"  CA certificate:       {fleet.layout.ca_cert}")
    typer.echo(f"  controller identity:  {fleet.layout.client_cert('controller')[0]}")
    typer.echo(f"  evidence public key:  {fleet.layout.evidence_public}")
    typer.echo("Keep ca/ca.key and evidence/evidence-private.json offline and backed up.")


@app.command("add-unit")
def add_unit(
    ctx: typer.Context,
    unit_id: Annotated[str, typer.Argument(help="Unit id: lower-case letters, digits, - and _.")],
    site: Annotated[str | None, typer.Option(help="Where the unit is deployed.")] = None,
    model: Annotated[str | None, typer.Option(help="Unit hardware model.")] = None,
    ups: Annotated[str | None, typer.Option(help="UPS, as nut://host:3493/upsname.")] = None,
    contractor: Annotated[str | None, typer.Option(help="Maintenance contractor.")] = None,
    force: Annotated[bool, typer.Option(help="Re-issue an existing unit.")] = False,
) -> None:
    """Issue a unit's certificate and signing key and write its enrollment bundle."""
    bundle = _open(ctx).add_unit(
        unit_id, site=site, model=model, ups=ups, contractor=contractor, force=force
    )
    typer.echo(f"unit {unit_id} enrolled; copy this folder onto the unit: {bundle}")


_CENTRE_ROLE_NAMES = ", ".join(r.value for r in CENTRE_ROLES)


@app.command("add-client")
def add_client(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="Client name, e.g. controller-2 or simulator-2 (the name gives the role), "
            "or any other name with --role."
        ),
    ],
    role: Annotated[
        str | None,
        typer.Option(help=f"Role of a name that does not carry one: {_CENTRE_ROLE_NAMES}."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Re-issue an existing identity.")] = False,
) -> None:
    """Issue a centre client identity: another controller instance (reads every unit, sends
    commands) or a load-simulator connection (writes what any unit writes).

    The broker ties each connection to its certificate (client id = CN), so every client
    that runs at the same time as another needs its own identity. Regenerate the broker
    config and reload the broker afterwards: its ACL grants the new identity its rights."""
    chosen = None
    if role is not None:
        if role not in {r.value for r in CENTRE_ROLES}:
            raise InvalidInput(f"--role must be one of {_CENTRE_ROLE_NAMES}, not {role!r}")
        chosen = Role(role)
    identity = _open(ctx).issue_client(name, role=chosen, force=force)
    typer.echo(f"certificate: {identity.cert_file}")
    typer.echo(f"key:         {identity.key_file}")
    typer.echo(f"CA:          {identity.ca_file}")
    typer.echo(
        "Now regenerate the broker config (cctv-provision broker-config --force ...) and "
        "reload the broker (SIGHUP) so its ACL grants this identity its rights."
    )


@app.command()
def clients(ctx: typer.Context) -> None:
    """List the centre client identities that hold a valid certificate, with their role."""
    for name, role in _open(ctx).centre_clients().items():
        typer.echo(f"{name}\t{role.value}")


@app.command("controller-identity")
def controller_identity(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Re-issue (the old certificate is revoked).")] = (
        False
    ),
) -> None:
    """Print the controller's TLS identity paths; with --force, issue a new one."""
    fleet = _open(ctx)
    cert, key = fleet.layout.client_cert("controller")
    if force or not (cert.is_file() and key.is_file()):
        identity = fleet.issue_client("controller", force=True)
    else:
        identity = fleet.controller_identity()
    typer.echo(f"certificate: {identity.cert_file}")
    typer.echo(f"key:         {identity.key_file}")
    typer.echo(f"CA:          {identity.ca_file}")


@app.command("evidence-endpoint")
def evidence_endpoint(
    ctx: typer.Context,
    host: Annotated[
        list[str],
        typer.Option(
            help="Address units reach the endpoint at (repeat for more names in its "
            "certificate; the first one goes into agent.toml). Loopback is always included."
        ),
    ],
    port: Annotated[int, typer.Option(help="HTTPS port.", min=1, max=65535)] = 8443,
) -> None:
    """Issue the server certificate of the controller's evidence upload endpoint and record
    its URL; units enrolled from now on (add-unit, or add-unit --force) upload there."""
    fleet = _open(ctx)
    endpoint = fleet.set_uploads_endpoint(host[0], port, tuple(host[1:]))
    typer.echo(f"evidence upload endpoint: {endpoint.url}")
    typer.echo(f"  certificate: {fleet.layout.uploads_cert}")
    typer.echo(f"  key:         {fleet.layout.uploads_key}")
    typer.echo(f"Set [evidence.uploads] port = {port} in the controller's settings and restart it.")


@app.command()
def revoke(
    ctx: typer.Context,
    unit_id: Annotated[
        str, typer.Argument(help="Unit id, or a centre client's name (e.g. simulator-2).")
    ],
) -> None:
    """Revoke a unit's (or centre client's) certificate and re-sign the CRL."""
    revoked = _open(ctx).revoke(unit_id)
    for cert in revoked:
        typer.echo(f"revoked {cert.cn} (serial {cert.serial})")
    typer.echo(
        "Now regenerate the broker config (cctv-provision broker-config --force ...) and "
        "restart or reload the broker: Mosquitto reads the CRL and ACL at start and on SIGHUP. "
        "A reload refuses new connections and mutes a connected revoked unit (ACL deny); "
        "a restart also disconnects it."
    )


@app.command("renew-crl")
def renew_crl(ctx: typer.Context) -> None:
    """Re-sign the CRL before it expires (an expired CRL makes the broker refuse everyone)."""
    path = _open(ctx).renew_crl()
    typer.echo(f"CRL re-signed: {path}; copy it to the broker (broker-config --force) and reload")


@app.command("broker-config")
def broker_config(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Folder for mosquitto.conf and its files.")],
    port: Annotated[
        int | None, typer.Option(help="TLS port (default: the fleet's).", min=1, max=65535)
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    persistence_dir: Annotated[
        Path | None, typer.Option(help="Broker persistence folder (default: none).")
    ] = None,
    run_as: Annotated[
        str | None, typer.Option(help="System user mosquitto runs as (default mosquitto).")
    ] = None,
    log_file: Annotated[Path | None, typer.Option(help="Log file (default stderr).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing config.")] = False,
) -> None:
    """Write a Mosquitto 2 config (TLS client certificates, CRL, ACL) for this fleet."""
    files = write_broker_config(
        _open(ctx),
        out,
        port=port,
        bind_host=host,
        persistence_dir=persistence_dir,
        run_as=run_as,
        log_file=log_file,
        force=force,
    )
    typer.echo(f"broker config written: run  mosquitto -c {files.config}")


@app.command()
def units(ctx: typer.Context) -> None:
    """List the fleet's units with their certificate status."""
    fleet = _open(ctx)
    for unit_id in fleet.unit_ids():
        info = fleet.unit_info(unit_id)
        status = fleet.unit_status(unit_id).value
        typer.echo(f"{unit_id}\t{status}\t{info.site or '-'}\t{info.contractor or '-'}")


@app.command()
def schema(
    outdir: Annotated[Path, typer.Argument(help="Folder for the JSON Schema files.")],
) -> None:
    """Export the protocol's JSON Schemas (for implementing an agent in another language)."""
    try:
        from protocol.schema import export_schemas
    except ImportError as exc:
        raise ProvisioningError(f"schema export is unavailable: {exc}") from exc
    for path in export_schemas(outdir):
        typer.echo(str(path))
