"""`cctv-agent`: run the agent, or check the unit on site."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge_agent.config import AgentSettings, ConfigError, load_config
from edge_agent.errors import AgentError

app = typer.Typer(
    help="The CCTV unit's agent: records, tests itself, watches its power and reports.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="agent.toml from the unit's enrollment bundle",
        envvar="CCTV_AGENT_CONFIG",
    ),
]


def _load(path: Path) -> AgentSettings:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def run(
    config: ConfigOpt = Path("agent.toml"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")] = False,
) -> None:
    """Run the agent until SIGTERM or Ctrl-C (then: seal, flush, say offline, exit 0)."""
    from edge_agent.link import LinkRefused
    from edge_agent.service import run_agent

    settings = _load(config)
    _logging(verbose)
    try:
        asyncio.run(run_agent(settings))
    except* LinkRefused as group:
        err.print(f"[red]refused by the broker:[/red] {group.exceptions[0]}")
        raise typer.Exit(3) from None
    except* AgentError as group:
        err.print(f"[red]error:[/red] {group.exceptions[0]}")
        raise typer.Exit(1) from None


@app.command()
def selftest(
    config: ConfigOpt = Path("agent.toml"),
    seconds: Annotated[float, typer.Option(help="Seconds of picture to watch first")] = 8.0,
) -> None:
    """Run every check here and print a table for the engineer on site (exit 1 on a fail)."""
    from edge_agent.selftest import render_table
    from edge_agent.service import Agent

    settings = _load(config)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def main() -> str:
        agent = Agent(settings)
        agent.source.start(None)
        try:
            with Console(stderr=True).status(f"Watching the camera for {seconds:g} s..."):
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while loop.time() < end:
                    await asyncio.to_thread(agent.sampler.poll)
                    await asyncio.sleep(0.25)
                report = await agent.runner.run("manual")
            Console().print(render_table(report))
            return report.verdict
        finally:
            await agent._close_stores()

    try:
        verdict = asyncio.run(main())
    except AgentError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(1 if verdict == "fail" else 0)


if __name__ == "__main__":
    app()
