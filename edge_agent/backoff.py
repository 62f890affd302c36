"""Capped exponential backoff with full jitter: the delay before each new attempt at
whatever the unit reconnects to (the broker, a camera stream, gpsd).

Full jitter (a uniform draw between zero and the capped exponential) keeps a fleet of
units from reconnecting in step after a shared outage (a switch, a mast, a VPN head end,
a restarted broker).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt `n` (0-based): uniform(0, min(cap, base * 2**n)), at least `floor`.

    The caller counts the attempts, and starts again from 0 once a connection has held.
    """

    base: float
    cap: float
    floor: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap and 0 <= self.floor <= self.base):
            raise ValueError(
                f"backoff needs 0 <= floor <= base <= cap and base > 0, not floor={self.floor} "
                f"base={self.base} cap={self.cap}"
            )

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 32))
        return max(self.floor, self.rng.uniform(0.0, ceiling))
