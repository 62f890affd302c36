"""The deployment gate: the unit records only while it holds a valid authorization.

Valid means: signed by the controller's key, addressed to this unit, inside its window
(`valid_from` <= now < `valid_until`), not revoked, not older than one already accepted,
and, where the unit knows its position, inside the approved geofence. The gate works
offline: `run()` closes it at `valid_until` with no message needed.

What the gate remembers survives a restart (`gate.json` in the data dir, written
atomically): the authorization it holds, the ids it has seen revoked, and the newest
`issued_at` it has accepted. So an old authorization replayed after a revocation (by a
compromised broker, or a stale retained message) is refused as `revoked` or `superseded`.

The retained authz topic is redelivered on every reconnect: the same authorization again
is accepted quietly, not treated as a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from edge_agent.errors import AgentError
from edge_agent.position import Position
from protocol.errors import RefusalReason, SignatureRefused
from protocol.faults import FaultCode
from protocol.messages import (
    Authorization,
    AuthorizationBody,
    FaultCleared,
    FaultRaised,
    GateChanged,
    RecordingProfile,
    Revocation,
    utcnow,
)
from protocol.signing import Verifier

__all__ = ["Gate", "GateEvent", "GateOutcome", "GateStateError"]

log = logging.getLogger(__name__)

GateEvent = GateChanged | FaultRaised | FaultCleared
#: How long a revoked id is remembered when the revoked authorization's end is unknown.
REVOKED_MEMORY = timedelta(days=400)
#: The timer wakes at least this often, so a wall-clock step (NTP) is noticed.
MAX_SLEEP_S = 30.0


class GateStateError(AgentError):
    """The gate's state file cannot be written."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"gate state {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GateOutcome:
    """What `Gate.handle` did with one inbound message."""

    status: Literal["accepted", "refused"]
    kind: Literal["authorization", "revocation"]
    ident: str
    reason: RefusalReason | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Gate:
    def __init__(
        self,
        verifier: Verifier,
        *,
        state_path: Path,
        fixed_position: Position | None = None,
        geofence_margin_m: float = 25.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if geofence_margin_m < 0:
            raise ValueError("geofence margin must be >= 0 metres")
        self._verifier = verifier
        self.unit_id = verifier.unit_id
        self._path = state_path
        self._clock = clock
        self._margin = geofence_margin_m
        self._fixed = fixed_position
        self._live: Position | None = None
        self._current: Authorization | None = None
        self._revoked: dict[str, datetime] = {}
        self._newest: datetime | None = None
        #: Why there is no authorization (revoked, ended), for the closed reason.
        self._ended_note = ""
        self._events: asyncio.Queue[GateEvent] = asyncio.Queue()
        self._wake = asyncio.Event()
        self.refused = 0
        self.is_open = False
        self.reason = "no deployment authorization"
        self._moved = False
        self._last_key: tuple[bool, str | None, str | None] = (False, None, None)
        self._load()
        self._evaluate(emit=False)
        self._last_key = self._key()

    # ------------------------------------------------------------------ read side

    @property
    def authorization(self) -> AuthorizationBody | None:
        return self._current.body if self._current is not None else None

    @property
    def deployment_id(self) -> str | None:
        return self._current.body.deployment_id if self.is_open and self._current else None

    @property
    def authorization_id(self) -> str | None:
        return self._current.body.authorization_id if self.is_open and self._current else None

    @property
    def masks(self) -> list[list[tuple[float, float]]]:
        return [list(p) for p in self._current.body.masks] if self._current else []

    @property
    def retention_days(self) -> int | None:
        return self._current.body.retention_days if self._current else None

    @property
    def profile(self) -> RecordingProfile | None:
        return self._current.body.profile if self._current else None

    @property
    def valid_until(self) -> datetime | None:
        return self._current.body.valid_until if self._current else None

    @property
    def position(self) -> Position | None:
        return self._live if self._live is not None else self._fixed

    async def wait_for_change(self) -> GateEvent:
        """The next event to report: a `GateChanged` when the gate opens or closes (or
        changes deployment), `FaultRaised`/`FaultCleared` for `unit_moved`."""
        return await self._events.get()

    def pending_events(self) -> list[GateEvent]:
        """Drain the events not yet taken (without waiting)."""
        out: list[GateEvent] = []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    # ------------------------------------------------------------------ inputs

    def handle(self, message: Authorization | Revocation) -> GateOutcome:
        """Take one message from the authz topic; never raises for a bad message."""
        if isinstance(message, Revocation):
            outcome = self._revocation(message)
        else:
            outcome = self._authorization(message)
        if not outcome.accepted:
            self.refused += 1
            log.warning(
                "unit=%s %s refused id=%s reason=%s detail=%s",
                self.unit_id,
                outcome.kind,
                outcome.ident,
                outcome.reason,
                outcome.detail,
            )
        self._evaluate()
        self._wake.set()
        return outcome

    def update_position(self, position: Position | None) -> None:
        """A new fix from gpsd, or None when the fix is lost."""
        self._live = position
        self._evaluate()

    def tick(self) -> None:
        """Re-evaluate against the clock (the timer does this; tests may too)."""
        self._prune()
        self._evaluate()

    async def run(self) -> None:
        """Close (or open) the gate on time: at `valid_from` / `valid_until`, offline."""
        while True:
            self.tick()
            delay = MAX_SLEEP_S
            now = self._clock()
            if self._current is not None:
                for edge in (self._current.body.valid_from, self._current.body.valid_until):
                    if edge > now:
                        delay = min(delay, (edge - now).total_seconds())
                        break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.01)):
                    await self._wake.wait()

    # ------------------------------------------------------------------ messages

    def _authorization(self, msg: Authorization) -> GateOutcome:
        ident = msg.body.authorization_id

        def refuse(reason: RefusalReason, detail: str) -> GateOutcome:
            return GateOutcome("refused", "authorization", ident, reason, detail)

        try:
            body = self._verifier.authorization(msg)
        except SignatureRefused as exc:
            return refuse(exc.reason, exc.detail)
        if ident in self._revoked:
            return refuse(RefusalReason.REVOKED, f"authorization {ident} was revoked")
        if self._current is not None and self._current.body.authorization_id == ident:
            if self._current.body != body:
                return refuse(RefusalReason.REPLAYED, f"authorization {ident} reused with changes")
            return GateOutcome("accepted", "authorization", ident, detail="already held")
        if self._newest is not None and body.issued_at <= self._newest:
            return refuse(
                RefusalReason.SUPERSEDED,
                f"issued {_iso(body.issued_at)}, not after the newest accepted "
                f"({_iso(self._newest)})",
            )
        self._current = msg
        self._newest = body.issued_at
        self._ended_note = ""
        self._save()
        log.info(
            "unit=%s authorization accepted id=%s deployment=%s until=%s",
            self.unit_id,
            ident,
            body.deployment_id,
            _iso(body.valid_until),
        )
        return GateOutcome("accepted", "authorization", ident)

    def _revocation(self, msg: Revocation) -> GateOutcome:
        ident = msg.body.revocation_id
        try:
            body = self._verifier.revocation(msg)
        except SignatureRefused as exc:
            return GateOutcome("refused", "revocation", ident, exc.reason, exc.detail)
        target = body.authorization_id
        forget_after = body.issued_at + REVOKED_MEMORY
        if self._current is not None and self._current.body.authorization_id == target:
            forget_after = self._current.body.valid_until + timedelta(days=1)
            self._current = None
            why = f": {body.reason}" if body.reason else ""
            self._ended_note = f"authorization {target} revoked {_iso(body.issued_at)}{why}"
        self._revoked[target] = max(forget_after, self._revoked.get(target, forget_after))
        if self._newest is None or body.issued_at > self._newest:
            self._newest = body.issued_at
        self._save()
        log.info("unit=%s revocation accepted authorization=%s", self.unit_id, target)
        return GateOutcome("accepted", "revocation", ident)

    # ------------------------------------------------------------------ decision

    def _decide(self, now: datetime) -> tuple[bool, str, float | None]:
        """(open, reason, metres outside the geofence or None)."""
        if self._current is None:
            return False, self._ended_note or "no deployment authorization", None
        body = self._current.body
        if now < body.valid_from:
            return False, f"authorization valid from {_iso(body.valid_from)}", None
        if now >= body.valid_until:
            return False, f"authorization ended {_iso(body.valid_until)}", None
        pos = self.position
        if body.geofence is not None and pos is not None:
            fence = body.geofence
            outside = pos.distance_m(fence.lat, fence.lon) - fence.radius_m
            # A fix is only as good as its error estimate: do not close on jitter.
            if outside > max(self._margin, pos.error_m or 0.0):
                return False, f"outside geofence by {outside:.0f} m", outside
        return True, f"deployment {body.deployment_id} at {body.location_name}", None

    def _key(self) -> tuple[bool, str | None, str | None]:
        return (self.is_open, self.deployment_id, self.authorization_id)

    def _evaluate(self, *, emit: bool = True) -> None:
        now = self._clock()
        if self._current is not None and now >= self._current.body.valid_until:
            self._ended_note = f"authorization ended {_iso(self._current.body.valid_until)}"
        self.is_open, self.reason, outside = self._decide(now)
        moved = outside is not None
        if moved != self._moved:
            self._moved = moved
            if emit:
                self._emit_fault(moved, outside)
        key = self._key()
        if key != self._last_key:
            self._last_key = key
            log.info(
                "unit=%s gate=%s reason=%s",
                self.unit_id,
                "open" if self.is_open else "closed",
                self.reason,
            )
            if emit:
                cur = self._current.body if self._current is not None else None
                self._events.put_nowait(
                    GateChanged(
                        open=self.is_open,
                        reason=self.reason,
                        deployment_id=cur.deployment_id if cur else None,
                        authorization_id=cur.authorization_id if cur else None,
                    )
                )

    def _emit_fault(self, moved: bool, outside: float | None) -> None:
        pos = self.position
        if moved:
            log.warning("unit=%s fault=%s %s", self.unit_id, FaultCode.UNIT_MOVED, self.reason)
            facts: dict[str, str | float | int | bool | None] = {
                "outside_m": round(outside or 0.0, 1),
                "lat": pos.lat if pos else None,
                "lon": pos.lon if pos else None,
            }
            self._events.put_nowait(
                FaultRaised(code=FaultCode.UNIT_MOVED, detail=self.reason, facts=facts)
            )
        else:
            self._events.put_nowait(
                FaultCleared(code=FaultCode.UNIT_MOVED, detail="back inside the geofence")
            )

    # ------------------------------------------------------------------ persistence

    def _prune(self) -> None:
        now = self._clock()
        stale = [k for k, until in self._revoked.items() if until < now]
        for key in stale:
            del self._revoked[key]
        if stale:
            self._save()

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "authorization": self._current.model_dump(mode="json") if self._current else None,
            "revoked": {k: v.isoformat() for k, v in self._revoked.items()},
            "newest_issued_at": self._newest.isoformat() if self._newest else None,
            "ended_note": self._ended_note,
        }
        tmp = self._path.with_suffix(".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump(doc, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
        except OSError as exc:
            raise GateStateError(self._path, exc.strerror or str(exc)) from exc

    def _load(self) -> None:
        try:
            doc = json.loads(self._path.read_text(encoding="utf-8"))
            self._revoked = {k: datetime.fromisoformat(v) for k, v in doc["revoked"].items()}
            newest = doc.get("newest_issued_at")
            self._newest = datetime.fromisoformat(newest) if newest else None
            self._ended_note = str(doc.get("ended_note", ""))
            raw = doc.get("authorization")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A damaged file must not open the gate; start closed and say so.
            log.error("unit=%s gate state unreadable, starting closed: %s", self.unit_id, exc)
            return
        if raw is None:
            return
        try:
            msg = Authorization.model_validate(raw)
            self._verifier.authorization(msg)
        except SignatureRefused as exc:
            if exc.reason is RefusalReason.EXPIRED:
                self._ended_note = f"authorization ended {_iso(msg.body.valid_until)}"
            else:
                log.error("unit=%s stored authorization refused: %s", self.unit_id, exc)
            return
        except ValidationError as exc:
            log.error("unit=%s stored authorization invalid: %s", self.unit_id, exc)
            return
        if msg.body.authorization_id not in self._revoked:
            self._current = msg
