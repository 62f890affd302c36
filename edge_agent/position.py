"""Where the unit is: a fixed position from its config, or live fixes from gpsd.

gpsd speaks JSON over TCP (port 2947): the client sends
`?WATCH={"enable":true,"json":true}` and gpsd streams one object per line; the `TPV`
(time-position-velocity) reports carry `mode` (0/1 = no fix, 2 = 2D, 3 = 3D), `lat`, `lon`
and error estimates (`eph`, or `epx`/`epy`) in metres. See gpsd_json(5).

A unit that loses its fix (mode < 2, or no report for `stale_after_s`) has *no* position:
the gate then decides on the authorization alone, as the design says ("where the unit has
a position fix").
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.backoff import Backoff
from edge_agent.errors import AgentError

__all__ = [
    "EARTH_RADIUS_M",
    "GpsdClient",
    "GpsdError",
    "Position",
    "haversine_m",
]

log = logging.getLogger(__name__)

#: Mean Earth radius (IUGG), metres.
EARTH_RADIUS_M = 6_371_008.8
WATCH = b'?WATCH={"enable":true,"json":true}\n'
#: A gpsd line longer than this is not a report we understand (SKY can be a few KB).
MAX_LINE = 64 * 1024


class GpsdError(AgentError):
    """gpsd could not be reached or spoke something other than its JSON protocol."""

    def __init__(self, message: str, *, host: str, port: int) -> None:
        super().__init__(f"gpsd {host}:{port}: {message}")
        self.host = host
        self.port = port


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    #: Horizontal error estimate in metres, when the source gives one.
    error_m: float | None = None
    at: datetime | None = None
    source: str = "fixed"

    def distance_m(self, lat: float, lon: float) -> float:
        return haversine_m(self.lat, self.lon, lat, lon)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two (lat, lon) points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def parse_report(line: bytes) -> Position | bool | None:
    """One gpsd line -> a Position (fix), None (a TPV without a fix) or False (not a TPV)."""
    try:
        doc: Any = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(doc, dict) or doc.get("class") != "TPV":
        return False
    mode = doc.get("mode", 0)
    lat, lon = doc.get("lat"), doc.get("lon")
    if not isinstance(mode, int) or mode < 2:
        return None
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    error = doc.get("eph")
    if not isinstance(error, int | float):
        epx, epy = doc.get("epx"), doc.get("epy")
        error = (
            max(epx, epy) if isinstance(epx, int | float) and isinstance(epy, int | float) else None
        )
    at: datetime | None = None
    if isinstance(doc.get("time"), str):
        try:
            at = datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            at = None
    return Position(float(lat), float(lon), None if error is None else float(error), at, "gpsd")


class GpsdClient:
    """Follows gpsd and yields the unit's position as it changes.

    `fixes()` never ends on its own: it reconnects with capped exponential backoff and
    full jitter, and yields `None` whenever the unit has no usable fix (gpsd down, no
    fix, or silence for `stale_after_s`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 2947,
        stale_after_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
    ) -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"gpsd port {port} is not a TCP port")
        if stale_after_s <= 0 or connect_timeout_s <= 0 or backoff_base_s <= 0:
            raise ValueError("gpsd timeouts and backoff must be positive")
        self.host = host
        self.port = port
        self._stale = stale_after_s
        self._connect_timeout = connect_timeout_s
        self._backoff = Backoff(backoff_base_s, max(backoff_cap_s, backoff_base_s))
        self.latest: Position | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE)
                writer.write(WATCH)
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            raise GpsdError(
                f"cannot connect ({exc or 'timed out'})", host=self.host, port=self.port
            ) from exc
        return reader, writer

    async def _session(self) -> AsyncIterator[Position | None]:
        reader, writer = await self._connect()
        log.info("gpsd connected host=%s port=%d", self.host, self.port)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._stale):
                        line = await reader.readline()
                except TimeoutError:
                    # gpsd is up but says nothing (no receiver, or no sky view): no fix.
                    if self.latest is not None:
                        self.latest = None
                        yield None
                    continue
                except (OSError, ValueError) as exc:  # ValueError: line over MAX_LINE
                    raise GpsdError(f"read failed ({exc})", host=self.host, port=self.port) from exc
                if not line:
                    raise GpsdError("connection closed", host=self.host, port=self.port)
                report = parse_report(line)
                if report is False:
                    continue
                assert report is None or isinstance(report, Position)
                self.latest = report
                yield report
        finally:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass

    async def fixes(self) -> AsyncIterator[Position | None]:
        attempt = 0
        while True:
            try:
                async for report in self._session():
                    attempt = 0
                    yield report
            except GpsdError as exc:
                log.warning("gpsd unavailable: %s", exc)
            if self.latest is not None:
                self.latest = None
                yield None
            delay = self._backoff.delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)
