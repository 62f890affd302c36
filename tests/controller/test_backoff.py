"""The one backoff rule of the controller: capped exponential ceilings, full jitter."""

from __future__ import annotations

import random

import pytest

from controller.backoff import full_jitter


def test_waits_stay_between_the_floor_and_the_capped_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(40):
        ceiling = min(30.0, 0.5 * 2**attempt)
        waits = [full_jitter(attempt, base=0.5, cap=30.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        # Full jitter: the draws spread over the whole range, not bunched at the top.
        assert min(waits) < ceiling * 0.1 and max(waits) > ceiling * 0.9
    floored = [full_jitter(0, base=0.25, cap=5.0, floor=0.05, rng=rng) for _ in range(200)]
    assert all(0.05 <= w <= 0.25 for w in floored)


def test_the_ceiling_doubles_then_holds_at_the_cap() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    top = Top()
    assert [full_jitter(n, base=1.0, cap=10.0, rng=top) for n in range(6)] == [
        1.0, 2.0, 4.0, 8.0, 10.0, 10.0,
    ]  # fmt: skip
    assert full_jitter(10_000, base=1.0, cap=10.0, rng=top) == 10.0
    assert full_jitter(3, base=2.0, rng=top) == 16.0  # no cap: the doubling alone
    assert full_jitter(0, base=0.1, floor=0.5, rng=top) == 0.5  # never below the floor


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "floor"),
    [(-1, 1.0, 1.0, 0.0), (0, -1.0, 1.0, 0.0), (0, 1.0, 1.0, -0.1)],
)
def test_bad_arguments_are_refused(attempt: int, base: float, cap: float, floor: float) -> None:
    with pytest.raises(ValueError, match="must be 0 or more"):
        full_jitter(attempt, base=base, cap=cap, floor=floor)
