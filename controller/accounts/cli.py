"""`cctv-controller user ...`: the people who sign in, and their API tokens.

    cctv-controller user add alice --role manager            # password: hidden prompt
    CCTV_USER_PASSWORD=... cctv-controller user add acme1 --role contractor \\
        --contractor "Acme Maintenance Ltd"
    cctv-controller user list
    cctv-controller user disable alice                       # ends sessions, revokes tokens
    cctv-controller user token create ops-script             # prints the token once

Exit codes: 0 done; 1 refused (bad input, user exists, unknown user); 2 the settings or
the database cannot be used. Every change is written to the audit log as `cli:<os user>`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from controller.accounts import AccountError, Accounts, Role
from controller.config import ControllerSettings
from controller.errors import ControllerError
from controller.store.base import Database
from controller.store.users import UnknownUser, UserExists

__all__ = ["PASSWORD_ENV", "user_app"]

PASSWORD_ENV = "CCTV_USER_PASSWORD"
CONFIG_ENV = "CCTV_CONTROLLER_CONFIG"
EXIT_REFUSED = 1
EXIT_UNUSABLE = 2

T = TypeVar("T")

user_app = typer.Typer(
    name="user", help="Manage the people who sign in, and their API tokens.", no_args_is_help=True
)
token_app = typer.Typer(
    name="token", help="Bearer tokens for scripts (shown once, stored hashed).",
    no_args_is_help=True,
)  # fmt: skip
user_app.add_typer(token_app)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", envvar=CONFIG_ENV, help="Controller settings file (TOML)", dir_okay=False
    ),
]
_err = Console(stderr=True)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _run(config: Path | None, work: Callable[[Accounts], Awaitable[T]]) -> T:
    """Open the database of `config` (migrated), run `work`, map failures to exit codes."""

    async def main() -> T:
        settings = ControllerSettings.load(config)
        async with Database(settings.database_url) as db:
            await db.migrate()
            return await work(Accounts(db))

    try:
        return asyncio.run(main())
    except (AccountError, UserExists, UnknownUser) as exc:
        _err.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(EXIT_REFUSED) from exc
    except ControllerError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from exc


def _password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@user_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Login name (lower case)")],
    role: Annotated[Role, typer.Option("--role", "-r", help="What the user may do")],
    contractor: Annotated[
        str | None,
        typer.Option(help="For a contractor: the company, as in the units inventory"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a user. The password comes from a hidden prompt, or from env CCTV_USER_PASSWORD."""
    password = _password()
    user = _run(
        config,
        lambda accounts: accounts.add_user(
            username, role, password, contractor=contractor, actor=_actor()
        ),
    )
    scope = f" for {user.contractor}" if user.contractor else ""
    _err.print(f"added {user.username} ({user.role.label}{scope})")


@user_app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
    config: ConfigOption = None,
) -> None:
    """List users with their role, contractor and state."""
    rows = _run(config, lambda accounts: accounts.users())
    if as_json:
        doc = [
            {
                "username": r.username,
                "role": r.role,
                "contractor": r.contractor,
                "disabled": r.disabled,
                "last_login_at": r.last_login_at.isoformat() if r.last_login_at else None,
            }
            for r in rows
        ]
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table("user", "role", "contractor", "state", "last login")
    for r in rows:
        table.add_row(
            r.username,
            r.role,
            r.contractor or "",
            "disabled" if r.disabled else "active",
            f"{r.last_login_at:%Y-%m-%d %H:%M} UTC" if r.last_login_at else "never",
        )
    Console().print(table)


@user_app.command("disable")
def disable(
    username: Annotated[str, typer.Argument(help="Login name")], config: ConfigOption = None
) -> None:
    """Disable a user: no more logins; their sessions end and their tokens are revoked."""
    _run(config, lambda accounts: accounts.set_disabled(username, True, actor=_actor()))
    _err.print(f"disabled {username}")


@user_app.command("enable")
def enable(
    username: Annotated[str, typer.Argument(help="Login name")], config: ConfigOption = None
) -> None:
    """Enable a disabled user again (their old tokens stay revoked)."""
    _run(config, lambda accounts: accounts.set_disabled(username, False, actor=_actor()))
    _err.print(f"enabled {username}")


@token_app.command("create")
def token_create(
    username: Annotated[str, typer.Argument(help="Whose token (it acts with their role)")],
    name: Annotated[str, typer.Option(help="What the token is for")] = "script",
    expires_days: Annotated[
        int | None, typer.Option(min=1, help="Expire after this many days (default: never)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a bearer token and print it once, alone on stdout."""
    expires = None if expires_days is None else timedelta(days=expires_days)
    token = _run(
        config,
        lambda accounts: accounts.create_token(
            username, name=name, actor=_actor(), expires_in=expires
        ),
    )
    _err.print("This token is shown once; store it safely. Send it as 'Authorization: Bearer'.")
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(
    username: Annotated[str, typer.Argument(help="Whose token")],
    prefix: Annotated[str, typer.Argument(help="The token's first 12 characters")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token by its first 12 characters."""
    count = _run(config, lambda accounts: accounts.revoke_token(username, prefix, actor=_actor()))
    if not count:
        _err.print(f"[red]refused:[/red] {username} has no live token starting {prefix!r}")
        raise typer.Exit(EXIT_REFUSED)
    _err.print(f"revoked {count} token(s) of {username}")
