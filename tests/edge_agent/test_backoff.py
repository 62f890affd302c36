"""The one backoff the agent reconnects with (broker, camera, gpsd): capped exponential,
full jitter, an optional floor."""

from __future__ import annotations

import random

import pytest

from edge_agent.backoff import Backoff


def test_backoff_is_capped_with_full_jitter() -> None:
    backoff = Backoff(base=0.5, cap=8.0, floor=0.05, rng=random.Random(1))
    delays = [[backoff.delay(n) for _ in range(200)] for n in range(10)]
    assert all(0.05 <= d <= 8.0 for row in delays for d in row)
    assert max(delays[0]) <= 0.5 and max(delays[9]) > 4.0  # grows, then capped
    assert len({round(d, 6) for d in delays[9]}) > 150  # jittered, not in step


def test_without_a_floor_each_delay_spans_zero_to_the_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(7))
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (500, 60.0)]:
        delays = [backoff.delay(attempt) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # the full range


@pytest.mark.parametrize(
    ("base", "cap", "floor"), [(2.0, 1.0, 0.0), (0.0, 1.0, 0.0), (0.5, 1.0, 0.6), (1.0, 2.0, -1)]
)
def test_bad_bounds_are_refused(base: float, cap: float, floor: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(base=base, cap=cap, floor=floor)
