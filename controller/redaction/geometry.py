"""Boxes on a frame, in the master's pixel coordinates (origin top left, x to the right,
y down; `x1`, `y1` exclusive), and the arithmetic redaction needs: overlap, movement
between two keyframes, a safety margin, and the whole pixels a fill covers."""

from __future__ import annotations

import math
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Box"]


class Box(BaseModel):
    """An axis-aligned rectangle on a frame, in pixels of the master clip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x0: float = Field(description="Left edge, pixels from the left of the frame.")
    y0: float = Field(description="Top edge, pixels from the top of the frame.")
    x1: float = Field(description="Right edge (exclusive).")
    y1: float = Field(description="Bottom edge (exclusive).")

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("a box's edges must be finite numbers")
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(
                f"a box needs its right edge right of its left and its bottom below its top "
                f"(got x {self.x0}..{self.x1}, y {self.y0}..{self.y1})"
            )
        return self

    @classmethod
    def at(cls, x0: float, y0: float, x1: float, y1: float) -> Box:
        """A box from its edges, checked like any other (`Box(x0=..., ...)` in one call)."""
        return cls(x0=x0, y0=y0, x1=x1, y1=y1)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def intersection(self, other: Box) -> float:
        """The area both boxes cover."""
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return w * h if w > 0 and h > 0 else 0.0

    def iou(self, other: Box) -> float:
        """Intersection over union: 1 for the same box, 0 for boxes that do not touch."""
        inter = self.intersection(other)
        return inter / (self.area + other.area - inter) if inter else 0.0

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def towards(self, other: Box, t: float) -> Box:
        """The box a fraction `t` of the way from this one to `other` (each edge moving in a
        straight line); `t` outside 0..1 carries the same movement on, before or after.
        Past the point where an edge would cross its opposite, the box keeps one pixel."""
        x0 = self.x0 + (other.x0 - self.x0) * t
        y0 = self.y0 + (other.y0 - self.y0) * t
        x1 = max(self.x1 + (other.x1 - self.x1) * t, x0 + 1.0)
        y1 = max(self.y1 + (other.y1 - self.y1) * t, y0 + 1.0)
        return Box.model_construct(x0=x0, y0=y0, x1=x1, y1=y1)

    def grown(self, margin: float) -> Box:
        """This box with each side pushed out by `margin` of the box's width (left, right)
        or height (top, bottom)."""
        dx, dy = self.width * margin, self.height * margin
        return Box.model_construct(
            x0=self.x0 - dx, y0=self.y0 - dy, x1=self.x1 + dx, y1=self.y1 + dy
        )

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """The whole pixels `(x0, y0, x1, y1)` that cover this box on a `width` x `height`
        frame, rounded outwards to even numbers so that the half-resolution colour planes
        of a 4:2:0 picture are covered too; None when the box is off the frame."""
        x0 = max(0, math.floor(self.x0) & ~1)
        y0 = max(0, math.floor(self.y0) & ~1)
        x1 = min(width, math.ceil(self.x1) + (math.ceil(self.x1) & 1))
        y1 = min(height, math.ceil(self.y1) + (math.ceil(self.y1) & 1))
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1
