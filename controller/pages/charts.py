"""Charts drawn on the server as inline SVG: no chart library, no script, readable without
colour (the battery periods are also listed in words beside the chart).

    svg = power_chart(points, start=now - timedelta(hours=24), end=now)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from markupsafe import Markup

__all__ = ["PowerPoint", "battery_periods", "power_chart"]

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


def power_chart(
    points: Sequence[PowerPoint],
    *,
    start: datetime,
    end: datetime,
    width: int = 760,
    height: int = 230,
) -> Markup:
    """Battery charge (%) over [start, end] with the periods on battery shaded."""
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
    parts: list[str] = []
    label = (
        f"Battery charge from {start:%d %b %H:%M} to {end:%d %b %H:%M} UTC; "
        f"{len(battery_periods(shown, end))} period(s) on battery"
    )
    parts.append(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    )
    parts.append(f"<title>{escape(label)}</title>")
    for since, until in battery_periods(shown, end):
        x0, x1 = x(since), x(until or end)
        parts.append(
            f'<rect class="battery" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1.5):.1f}" '
            f'height="{plot_h}"><title>On battery from {since:%d %b %H:%M}</title></rect>'
        )
    for pct in (0, 25, 50, 75, 100):
        gy = y(pct)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{pct}%</text>')
    long_span = end - start > timedelta(days=2)
    for tick in _ticks(start, end):
        tx = x(tick)
        parts.append(
            f'<line class="axis" x1="{tx:.1f}" x2="{tx:.1f}" y1="{top + plot_h}" '
            f'y2="{top + plot_h + 4}"/>'
        )
        text = f"{tick:%d %b}" if long_span else f"{tick:%H:%M}"
        parts.append(
            f'<text x="{tx:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{text}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}"/>'
    )
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>')
    charged = [p for p in shown if p.charge_pct is not None]
    if charged:
        coords = [(x(p.at), y(p.charge_pct or 0.0)) for p in charged]
        coords.append((x(end), coords[-1][1]))  # the last reading holds until now
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
        parts.append(f'<polyline class="series" points="{path}"/>')
    else:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            'text-anchor="middle">No battery charge reported in this period</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
