"""The self-test report as a table for the engineer on site (`cctv-agent selftest`)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from edge_agent.selftest.outcome import CheckOutcome
from edge_agent.selftest.runner import SelfTestReport

__all__ = ["render_table"]

_STYLE = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red", "not_assessed": "dim"}
_WORDS = {"not_assessed": "NOT ASSESSED"}


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.0f}"
    return f"{text} {unit}".strip()


def _row(outcome: CheckOutcome) -> list[str | Text]:
    fault = outcome.fault.info.title if outcome.fault and outcome.verdict == "fail" else ""
    return [
        outcome.name,
        Text(_WORDS.get(outcome.verdict, outcome.verdict.upper()), style=_STYLE[outcome.verdict]),
        _number(outcome.value, outcome.unit),
        _number(outcome.threshold, outcome.unit),
        outcome.message,
        fault,
    ]


def render_table(report: SelfTestReport) -> Table:
    """One row per check: verdict, measured value, threshold, what it means."""
    took = (report.finished_at - report.started_at).total_seconds()
    when = f"{report.started_at:%Y-%m-%d %H:%M:%S} UTC"
    table = Table(
        title=f"Self-test {when} ({report.trigger}, {took:.1f} s)",
        caption=Text(f"Overall: {report.verdict.upper()}", style=_STYLE[report.verdict]),
        show_lines=False,
    )
    table.add_column("Check", no_wrap=True)
    table.add_column("Result", no_wrap=True)
    table.add_column("Measured", justify="right", no_wrap=True)
    table.add_column("Limit", justify="right", no_wrap=True)
    table.add_column("Details")
    table.add_column("Fault")
    for outcome in report.outcomes:
        table.add_row(*_row(outcome))
    return table
