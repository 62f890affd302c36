"""How long to wait before trying again: capped exponential backoff with full jitter.

Every retry loop of the controller waits `full_jitter(attempt, ...)`: the broker link's
reconnects, the ingest writer while the database is unavailable, the wait for the
database at start, and the notifications' retries. The wait is drawn uniformly between
`floor` (default 0) and `min(cap, base * 2**attempt)`, so many controllers or units
retrying after one outage spread out instead of arriving together ("full jitter", as in
Marc Brooker's "Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
"""

from __future__ import annotations

import math
import random

__all__ = ["full_jitter"]

#: Beyond this many doublings every wait is the cap anyway (and 2.0**n stays finite).
_MAX_DOUBLINGS = 64


def full_jitter(
    attempt: int,
    *,
    base: float,
    cap: float = math.inf,
    floor: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry `attempt` (0 for the first retry).

    `base`: the ceiling of the first wait, doubled at each attempt up to `cap`;
    `floor`: the shortest wait (a loop that must not spin); `rng`: a random source of
    the caller's (default: the `random` module's)."""
    if attempt < 0:
        raise ValueError(f"attempt must be 0 or more, not {attempt}")
    if base < 0 or floor < 0 or cap < 0:
        raise ValueError("base, cap and floor must be 0 or more")
    ceiling = min(cap, base * 2.0 ** min(attempt, _MAX_DOUBLINGS))
    return (rng or random).uniform(floor, max(floor, ceiling))
