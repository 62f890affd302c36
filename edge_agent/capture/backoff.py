"""Capped exponential backoff with full jitter, for reopening a camera stream.

Full jitter (a uniform draw between zero and the capped exponential) keeps a fleet of
units from reconnecting in step after a shared outage (a switch, a mast, a VPN head end).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delay before attempt `n` (0-based): uniform(0, min(cap, base * 2**n)), at least `floor`."""

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.05
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.base <= self.cap:
            raise ValueError("backoff needs 0 < floor <= base <= cap")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 32))
        return max(self.floor, self.rng.uniform(0.0, ceiling))
