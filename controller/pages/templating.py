"""The pages' Jinja2 environment (autoescaping on), its formatting filters, and `macro`:
every piece of HTML the pages send is written in a template under `controller/templates/`,
never assembled in Python.

    draw = macro("_charts.html", "power_chart")
    svg = draw(chart)           # Markup, escaped by the template

Times: every template shows an instant with `{{ at | when }}` ("14 Jul 2026 10:21 BST"),
a time of day with `{{ at | clock }}`, a day with `{{ at | day }}`, always in the control
room's zone (`ControllerSettings.timezone`, given to `use_zone` when the app is built; the
global `zone`, which imported macros see too) with the zone named.

Codes: a fault code, a self-test check, a verdict, a callout state or priority is shown
through its filter (`fault_title`, `fault_advice`, `check_title`, `verdict_words`,
`status_words`, `priority_words`, from `controller.labels`), and a measured value with
`{{ value | measured(unit) }}` ("not measured" where nothing was measured).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from controller import labels, localtime
from controller.fleet.selftests import check_verdict
from controller.pages.model_fields import label_for

__all__ = [
    "PATH_SEPARATOR",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "fmt_ago",
    "fmt_bytes",
    "fmt_duration",
    "fmt_field_path",
    "fmt_pct",
    "fmt_value",
    "fmt_when",
    "macro",
    "page_zone",
    "templates",
    "use_zone",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
PATH_SEPARATOR = "\u203a"


def fmt_when(
    value: datetime | None, empty: str = "never", zone: ZoneInfo = localtime.DEFAULT_ZONE
) -> str:
    """`23 Nov 2026 09:21 GMT` in `zone`; `empty` for None."""
    if value is None:
        return empty
    return localtime.when(value, zone)


def _zone(context: Context) -> ZoneInfo:
    found = context.get("zone")
    return found if isinstance(found, ZoneInfo) else localtime.DEFAULT_ZONE


@pass_context
def _when(context: Context, value: datetime | None, empty: str = "never") -> str:
    return fmt_when(value, empty, _zone(context))


@pass_context
def _clock(context: Context, value: datetime | None, empty: str = "") -> str:
    return empty if value is None else localtime.clock(value, _zone(context))


@pass_context
def _day(context: Context, value: datetime | date | None, empty: str = "") -> str:
    return empty if value is None else localtime.day(value, _zone(context))


def _by_verdict(checks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A report's checks as `not_passing` (fail, warn) and `not_assessed`."""
    grouped: dict[str, list[dict[str, Any]]] = {"not_passing": [], "not_assessed": []}
    for check in checks:
        verdict = check_verdict(check)
        if verdict == "not_assessed":
            grouped["not_assessed"].append(check)
        elif verdict != "pass":
            grouped["not_passing"].append(check)
    return grouped


def _countdown(deadline: datetime | None, now: datetime | None = None) -> str:
    if deadline is None:
        return ""
    return localtime.countdown(deadline, now or datetime.now(UTC))


def fmt_ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest sensible unit: `42 s ago`, `5 min ago`, `3 h ago`."""
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 0:
        return "just now"
    for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {name} ago"
    return f"{int(seconds)} s ago"


def fmt_bytes(value: int | float | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for name in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or name == "TB":
            return f"{size:.0f} {name}" if name == "B" else f"{size:.1f} {name}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns


def fmt_duration(hours: float | None) -> str:
    if hours is None:
        return "n/a"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def fmt_value(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def fmt_field_path(path: str) -> str:
    """`d.pia.risks.0.title` -> "Privacy impact assessment, then Risks 1, then Title"
    joined by a single right-pointing angle quotation mark."""
    parts: list[str] = []
    for part in path.split(".")[1:]:
        if part.isdigit() and parts:
            parts[-1] += f" {int(part) + 1}"
        else:
            parts.append(label_for(part))
    return f" {PATH_SEPARATOR} ".join(parts) or "The request as a whole"


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters.update(
    when=_when,
    clock=_clock,
    day=_day,
    countdown=_countdown,
    fault_title=lambda code: labels.fault_label(code).title,
    fault_advice=lambda code: labels.fault_label(code).advice,
    check_title=lambda name: labels.check_label(name).title,
    measured=labels.measured,
    span=localtime.duration_words,
    check_verdict=check_verdict,
    by_verdict=_by_verdict,
    verdict_words=labels.verdict_words,
    status_words=labels.status_words,
    event_words=labels.event_words,
    trigger_words=labels.trigger_words,
    priority_words=labels.priority_words,
    ago=fmt_ago,
    bytes=fmt_bytes,
    duration=fmt_duration,
    pct=fmt_pct,
    value=fmt_value,
    field_path=fmt_field_path,
)
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True
templates.env.globals["zone"] = localtime.DEFAULT_ZONE
templates.env.globals.update(check_label=labels.check_label, fault_label=labels.fault_label)


def use_zone(zone: ZoneInfo) -> None:
    """Show every time on the pages in `zone` (the control room's, from its settings)."""
    templates.env.globals["zone"] = zone


def page_zone() -> ZoneInfo:
    """The zone the pages show times in (for words made in Python)."""
    found = templates.env.globals.get("zone")
    return found if isinstance(found, ZoneInfo) else localtime.DEFAULT_ZONE


def macro(template: str, name: str) -> Callable[..., Markup]:
    """The macro `name` of `template`, as a function returning escaped HTML (the template
    is looked up on each call, so an edited template is picked up like a page's)."""

    def draw(*args: Any, **kwargs: Any) -> Markup:
        found = getattr(templates.env.get_template(template).module, name, None)
        if not callable(found):
            raise LookupError(f"{template} has no macro {name!r}")
        return Markup(found(*args, **kwargs))

    return draw
