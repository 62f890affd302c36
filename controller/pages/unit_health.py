"""The unit page's live facts from the heartbeat in plain words: how long the unit's agent
has been up, the messages it had to drop, where it is (with a map link), its temperature
and its clock. A fact the unit did not measure is left out (None), never shown as a bare
unit; the names of the commands it was sent, in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.fleet import UnitSummary

__all__ = ["ACTION_WORDS", "HealthWords", "duration_words", "unit_health_words"]

ACTION_WORDS = {
    "selftest_now": "Self-test now",
    "set_hold": "Evidential hold",
    "release_hold": "Release hold",
    "set_config": "Change settings",
    "request_export": "Stage an export",
    "reference_snapshot": "Send a reference picture",
}
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


@dataclass(frozen=True, slots=True)
class HealthWords:
    uptime: str | None
    dropped: str | None
    dropped_warning: str | None
    position: str | None
    map_url: str | None
    temperature: str | None
    clock: str | None


def _plural(count: int, name: str) -> str:
    return f"{count} {name}{'' if count == 1 else 's'}"


def duration_words(seconds: float) -> str:
    """The largest whole unit and the next: "3 days 4 hours", "5 minutes", "40 seconds"."""
    left = max(0, int(seconds))
    for i, (name, size) in enumerate(_UNITS):
        if left < size and size > 1:
            continue
        count, rest = divmod(left, size)
        words = [_plural(count, name)]
        if i + 1 < len(_UNITS) and (sub := rest // _UNITS[i + 1][1]):
            words.append(_plural(sub, _UNITS[i + 1][0]))
        return " ".join(words)
    raise AssertionError("unreachable: the last unit is one second")


def _clock(offset: float) -> str:
    size = abs(offset)
    if size < 0.0005:
        return "matches the time server"
    return f"{size:.3f} s {'behind' if offset > 0 else 'ahead of'} the time server"


def unit_health_words(
    summary: UnitSummary, status: dict[str, Any], *, contractor: bool
) -> HealthWords:
    """The heartbeat facts of `status` in words; the position is left out for a
    contractor (where a unit stands is the control room's to share)."""
    dropped = summary.outbox_dropped
    position = None if contractor else summary.position
    temperature = status.get("temperature_c")
    offset = status.get("clock_offset_s")
    return HealthWords(
        uptime=None if summary.uptime_s is None else duration_words(summary.uptime_s),
        dropped=None if dropped is None else ("none" if dropped == 0 else f"{dropped:,}"),
        dropped_warning=(
            f"The unit dropped {dropped:,} message{'' if dropped == 1 else 's'} since its agent "
            "started (its outbox was full): some of its reports never reached the control room."
            if dropped
            else None
        ),
        position=None if position is None else f"{position[0]:.5f}, {position[1]:.5f}",
        map_url=None
        if position is None
        else (
            f"https://www.openstreetmap.org/?mlat={position[0]:.6f}&mlon={position[1]:.6f}"
            f"#map=17/{position[0]:.6f}/{position[1]:.6f}"
        ),
        temperature=None if temperature is None else f"{float(temperature):.1f} °C",
        clock=None if offset is None else _clock(float(offset)),
    )
