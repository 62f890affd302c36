"""Charts drawn on the server as inline SVG: no chart library, no script, readable without
colour (the battery periods are also listed in words beside the chart). This module works
out the geometry; the markup is the `_charts.html` template's.

    svg = power_chart(points, start=now - timedelta(hours=24), end=now)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup

from controller import localtime
from controller.pages.templating import macro, page_zone

__all__ = ["PowerChart", "PowerPoint", "battery_periods", "power_chart", "power_chart_geometry"]

_TICK_STEPS = (
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=7),
)


@dataclass(frozen=True, slots=True)
class PowerPoint:
    """One power reading: when, whether on battery, and the charge if the UPS reports it."""

    at: datetime
    on_battery: bool
    charge_pct: float | None = None


def battery_periods(
    points: Sequence[PowerPoint], end: datetime
) -> list[tuple[datetime, datetime | None]]:
    """The (from, to) spans spent on battery; `to` is None while still on battery at `end`."""
    periods: list[tuple[datetime, datetime | None]] = []
    since: datetime | None = None
    for point in sorted(points, key=lambda p: p.at):
        if point.on_battery and since is None:
            since = point.at
        elif not point.on_battery and since is not None:
            periods.append((since, point.at))
            since = None
    if since is not None:
        periods.append((since, None))
    return periods


def _tick_step(span: timedelta) -> timedelta:
    for step in _TICK_STEPS:
        if span / step <= 8:
            return step
    return _TICK_STEPS[-1]


def _ticks(start: datetime, end: datetime) -> list[datetime]:
    step = _tick_step(end - start)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    steps, rest = divmod(start - epoch, step)
    first = epoch + step * (steps + (1 if rest else 0))  # the first step boundary from start
    ticks = []
    at = first
    while at <= end:
        ticks.append(at)
        at += step
    return ticks


@dataclass(frozen=True, slots=True)
class PowerChart:
    """The geometry of the battery chart, in SVG user units: the shaded periods on battery
    (x, width, since), the percentage grid (y, pct), the time ticks (x, text) and the
    charge line's points (empty: no charge reported)."""

    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    label: str
    battery: tuple[tuple[float, float, datetime], ...]
    grid: tuple[tuple[float, int], ...]
    ticks: tuple[tuple[float, str], ...]
    line: tuple[tuple[float, float], ...]


def power_chart_geometry(
    points: Sequence[PowerPoint],
    *,
    start: datetime,
    end: datetime,
    width: int = 760,
    height: int = 230,
) -> PowerChart:
    """Where everything of the chart over [start, end] goes (see `power_chart`)."""
    if end <= start:
        raise ValueError("the chart's end must be after its start")
    left, right, top, bottom = 44, 12, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    span = (end - start).total_seconds()

    def x(at: datetime) -> float:
        clamped = min(max(at, start), end)
        return left + plot_w * (clamped - start).total_seconds() / span

    def y(pct: float) -> float:
        return top + plot_h * (1 - min(max(pct, 0.0), 100.0) / 100)

    shown = sorted((p for p in points if start <= p.at <= end), key=lambda p: p.at)
    before = [p for p in points if p.at < start]
    if before:  # the state at the window's start carries in from the last earlier reading
        shown.insert(0, PowerPoint(start, before[-1].on_battery, before[-1].charge_pct))
    periods = battery_periods(shown, end)
    zone = page_zone()
    label = (
        f"Battery charge from {localtime.when(start, zone)} to {localtime.when(end, zone)}; "
        f"{len(periods)} period(s) on battery"
    )
    long_span = end - start > timedelta(days=2)

    def local(at: datetime) -> datetime:
        return localtime.local(at, zone)

    charged = [p for p in shown if p.charge_pct is not None]
    line = [(x(p.at), y(p.charge_pct or 0.0)) for p in charged]
    if line:
        line.append((x(end), line[-1][1]))  # the last reading holds until now
    return PowerChart(
        width=width,
        height=height,
        left=left,
        top=top,
        plot_width=plot_w,
        plot_height=plot_h,
        label=label,
        battery=tuple(
            (x(since), max(x(until or end) - x(since), 1.5), since) for since, until in periods
        ),
        grid=tuple((y(pct), pct) for pct in (0, 25, 50, 75, 100)),
        ticks=tuple(
            (x(tick), f"{local(tick):%d %b}" if long_span else f"{local(tick):%H:%M}")
            for tick in _ticks(start, end)
        ),
        line=tuple(line),
    )


_draw = macro("_charts.html", "power_chart")


def power_chart(
    points: Sequence[PowerPoint],
    *,
    start: datetime,
    end: datetime,
    width: int = 760,
    height: int = 230,
) -> Markup:
    """Battery charge (%) over [start, end] with the periods on battery shaded, as inline
    SVG (the `_charts.html` template)."""
    return _draw(power_chart_geometry(points, start=start, end=end, width=width, height=height))
