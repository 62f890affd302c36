"""The bandwidth cap of evidence uploads: a token bucket in bytes per second.

A 4G data plan is shared with the unit's telemetry and an engineer's remote view; the cap
keeps an upload from taking the whole link. Tokens accrue at `rate` up to `burst`; sending
`n` bytes takes `n` tokens and waits while the bucket is in debt, so over any stretch
longer than a burst the bytes sent stay within `rate` per second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """`rate` bytes per second (0: no cap), at most `burst` bytes at once after a pause."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0:
            raise ValueError("the rate cannot be negative")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else min(rate, 64 * 1024))
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    async def take(self, size: int) -> None:
        """Wait until `size` bytes may be sent."""
        if self.unlimited:
            return
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= size
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)
