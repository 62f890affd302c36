"""The redaction plan of one clip: which boxes are filled on which frames.

A plan starts as what the detector found (`detected`: one `Track` per face it followed)
and changes only by **edits**, each an event with who made it and when (`edits`):

- `AddBox`: the reviewer draws a box (a person, a number plate, a tattoo) with one or
  more keyframes; between keyframes the box moves in a straight line, so a box set at
  two frames follows its object between them.
- `SetKeyframe` / `DeleteKeyframe`: the reviewer places a box (detected or drawn) on a
  frame, or takes a keyframe away.
- `RemoveBox` / `RestoreBox`: a box that masks nobody (a poster, a reflection) is taken
  out, with the reason; or put back.
- `Unmask` / `Mask`: a real person left visible, normally the requester; or masked again.
- `Confirm`: a reviewer has watched the whole clip with its boxes. Any later edit
  withdraws the confirmation.

The default is **everyone masked except the requester**: every track is filled unless it
was removed or un-masked. The state is the replay of the edits over the detected tracks,
so the plan is its own audit trail; a plan loaded from storage is replayed and refused
if an edit does not apply.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from itertools import pairwise
from types import MappingProxyType
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from controller.redaction.errors import EditRefused, UnknownTrack
from controller.redaction.geometry import Box
from controller.redaction.settings import DetectionSettings, MaskStyle

__all__ = [
    "AddBox",
    "Confirm",
    "DeleteKeyframe",
    "Keyframe",
    "Label",
    "Mask",
    "PlanEdit",
    "PlanState",
    "RedactionPlan",
    "RemoveBox",
    "RestoreBox",
    "SetKeyframe",
    "Track",
    "Unmask",
]

Label = Literal["face", "person", "plate", "tattoo", "other"]

_DETECTED_ID = re.compile(r"^face-[1-9][0-9]*$")
_REVIEWER_ID = re.compile(r"^box-[1-9][0-9]*$")
_TRACK_ID = r"^(face|box)-[1-9][0-9]*$"
_FROZEN = ConfigDict(extra="forbid", frozen=True)


class Keyframe(BaseModel):
    """Where a box is on one frame (frames count from 0 in presentation order)."""

    model_config = _FROZEN

    frame: int = Field(ge=0)
    box: Box


class Track(BaseModel):
    """One box through the clip: a face the detector followed (`face-N`) or a box a
    reviewer drew (`box-N`). On a frame between two keyframes the box is in between, in a
    straight line; before the first or after the last keyframe (inside `start`..`end`) it
    carries on at the speed of the nearest two, which covers a face during the frames
    the detector was not run on as it came into or left the picture."""

    model_config = _FROZEN

    track_id: str = Field(pattern=_TRACK_ID)
    origin: Literal["detected", "reviewer"]
    label: Label = "face"
    keyframes: tuple[Keyframe, ...] = Field(min_length=1)
    start: int = Field(ge=0, description="First frame the box is on.")
    end: int = Field(ge=0, description="Last frame the box is on (inclusive).")
    score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Highest detector confidence on the track."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        frames = [k.frame for k in self.keyframes]
        if any(b <= a for a, b in pairwise(frames)):
            raise ValueError(f"{self.track_id}: keyframes must be in frame order, once each")
        if not self.start <= frames[0] or not frames[-1] <= self.end:
            raise ValueError(
                f"{self.track_id}: frames {self.start}..{self.end} must hold every keyframe "
                f"({frames[0]}..{frames[-1]})"
            )
        pattern = _DETECTED_ID if self.origin == "detected" else _REVIEWER_ID
        if not pattern.match(self.track_id):
            raise ValueError(f"{self.track_id}: a {self.origin} box's id is wrong")
        return self

    def box_at(self, frame: int) -> Box | None:
        """The box on `frame`, or None when the track is not on it."""
        if frame < self.start or frame > self.end:
            return None
        keys = self.keyframes
        i = bisect.bisect_left(keys, frame, key=_frame_of)
        if i < len(keys) and keys[i].frame == frame:
            return keys[i].box
        if len(keys) == 1:
            return keys[0].box
        # Between keys[i-1] and keys[i]; before the first or after the last, the nearest
        # two carry the movement on.
        i = min(max(i, 1), len(keys) - 1)
        a, b = keys[i - 1], keys[i]
        return a.box.towards(b.box, (frame - a.frame) / (b.frame - a.frame))

    def with_keyframe(self, key: Keyframe) -> Track:
        """This track with `key` placed (replacing one on the same frame), its frames
        widened to hold it."""
        keys = [k for k in self.keyframes if k.frame != key.frame]
        bisect.insort(keys, key, key=_frame_of)
        return self._but(
            keyframes=tuple(keys), start=min(self.start, key.frame), end=max(self.end, key.frame)
        )

    def without_keyframe(self, frame: int) -> Track:
        """This track less its keyframe on `frame` (a drawn box then spans only the rest)."""
        keys = tuple(k for k in self.keyframes if k.frame != frame)
        if self.origin == "reviewer":
            return self._but(keyframes=keys, start=keys[0].frame, end=keys[-1].frame)
        return self._but(keyframes=keys, start=self.start, end=self.end)

    def _but(self, *, keyframes: tuple[Keyframe, ...], start: int, end: int) -> Track:
        return Track(
            track_id=self.track_id,
            origin=self.origin,
            label=self.label,
            keyframes=keyframes,
            start=start,
            end=end,
            score=self.score,
        )


def _frame_of(key: Keyframe) -> int:
    return key.frame


# --- edits ---------------------------------------------------------------------------


class _Edit(BaseModel):
    model_config = _FROZEN

    at: AwareDatetime = Field(description="When the edit was made.")
    by: str = Field(min_length=1, max_length=200, description="Who made it (login name).")


class AddBox(_Edit):
    """The reviewer draws a box that follows its object between the keyframes set."""

    kind: Literal["add_box"] = "add_box"
    track_id: str = Field(pattern=r"^box-[1-9][0-9]*$")
    label: Label
    keyframes: tuple[Keyframe, ...] = Field(min_length=1)

    def describe(self) -> str:
        frames = ", ".join(str(k.frame) for k in self.keyframes)
        return f"Added box {self.track_id} ({self.label}) with keyframes at frames {frames}."


class SetKeyframe(_Edit):
    """The reviewer places a box on a frame."""

    kind: Literal["set_keyframe"] = "set_keyframe"
    track_id: str = Field(pattern=_TRACK_ID)
    frame: int = Field(ge=0)
    box: Box

    def describe(self) -> str:
        return f"Placed box {self.track_id} on frame {self.frame}."


class DeleteKeyframe(_Edit):
    """The reviewer takes a keyframe away from a box."""

    kind: Literal["delete_keyframe"] = "delete_keyframe"
    track_id: str = Field(pattern=_TRACK_ID)
    frame: int = Field(ge=0)

    def describe(self) -> str:
        return f"Took the keyframe on frame {self.frame} away from box {self.track_id}."


class RemoveBox(_Edit):
    """A box that masks nobody is taken out."""

    kind: Literal["remove_box"] = "remove_box"
    track_id: str = Field(pattern=_TRACK_ID)
    reason: str = Field(min_length=1, max_length=500)

    def describe(self) -> str:
        return f"Removed box {self.track_id}: {self.reason}."


class RestoreBox(_Edit):
    """A removed box is put back."""

    kind: Literal["restore_box"] = "restore_box"
    track_id: str = Field(pattern=_TRACK_ID)

    def describe(self) -> str:
        return f"Put box {self.track_id} back."


class Unmask(_Edit):
    """A person is left visible: normally the requester of a subject access request."""

    kind: Literal["unmask"] = "unmask"
    track_id: str = Field(pattern=_TRACK_ID)
    reason: str = Field(default="the requester", min_length=1, max_length=500)

    def describe(self) -> str:
        return f"Left box {self.track_id} un-masked: {self.reason}."


class Mask(_Edit):
    """An un-masked person is masked again."""

    kind: Literal["mask"] = "mask"
    track_id: str = Field(pattern=_TRACK_ID)

    def describe(self) -> str:
        return f"Masked box {self.track_id} again."


class Confirm(_Edit):
    """A reviewer has watched the whole clip with its boxes and confirms the plan."""

    kind: Literal["confirm"] = "confirm"

    def describe(self) -> str:
        return "Confirmed the redaction of the whole clip."


PlanEdit = Annotated[
    AddBox | SetKeyframe | DeleteKeyframe | RemoveBox | RestoreBox | Unmask | Mask | Confirm,
    Field(discriminator="kind"),
]


# --- the plan ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanState:
    """A plan after its edits: every box by id, those removed and those un-masked (each
    with its reason), the confirmation in force, if any, and when the last edit was made."""

    tracks: Mapping[str, Track]
    removed: Mapping[str, str]
    unmasked: Mapping[str, str]
    confirmed: Confirm | None
    last_edit: datetime | None


class RedactionPlan(BaseModel):
    """Everything that decides the derived copy of one master clip."""

    model_config = _FROZEN

    master_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the master.")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    frame_count: int = Field(gt=0)
    frame_rate: float = Field(
        gt=0, description="Frames per second, as decoded (the copy's rate too)."
    )
    detector: str = Field(description="The detector and its model's SHA-256.")
    detection: DetectionSettings
    style: MaskStyle = MaskStyle()
    detected: tuple[Track, ...] = ()
    edits: tuple[PlanEdit, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for track in self.detected:
            if track.origin != "detected":
                raise ValueError(f"{track.track_id} is listed as detected but was drawn")
            if track.end >= self.frame_count:
                raise ValueError(f"{track.track_id} runs past the clip's last frame")
        if len({t.track_id for t in self.detected}) != len(self.detected):
            raise ValueError("two detected tracks share an id")
        try:
            _ = self.state
        except (EditRefused, UnknownTrack) as exc:
            raise ValueError(f"an edit does not apply: {exc}") from exc
        return self

    # -- edits --

    def apply(self, edit: PlanEdit) -> RedactionPlan:
        """The plan with `edit` made; `EditRefused` or `UnknownTrack` say why not."""
        state = self._step(self.state, edit)
        plan = self.model_copy(update={"edits": (*self.edits, edit)})
        plan.__dict__["state"] = state  # the replay's result, kept instead of redone
        return plan

    def digest(self) -> str:
        """SHA-256 of the plan as stored (its JSON): names the exact plan, edits and all,
        that a redacted copy was made under."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def next_box_id(self) -> str:
        """The id for the next box a reviewer draws."""
        used = [int(i.split("-")[1]) for i in self.state.tracks if i.startswith("box-")]
        return f"box-{max(used, default=0) + 1}"

    # -- state --

    @cached_property
    def state(self) -> PlanState:
        state = PlanState(
            tracks={t.track_id: t for t in self.detected},
            removed={},
            unmasked={},
            confirmed=None,
            last_edit=None,
        )
        for edit in self.edits:
            state = self._step(state, edit)
        return state

    @property
    def tracks(self) -> tuple[Track, ...]:
        return tuple(self.state.tracks.values())

    def track(self, track_id: str) -> Track:
        try:
            return self.state.tracks[track_id]
        except KeyError:
            raise UnknownTrack(track_id) from None

    def is_masked(self, track_id: str) -> bool:
        """Whether the box is filled on the derived copy (every box is, unless removed or
        un-masked)."""
        self.track(track_id)
        state = self.state
        return track_id not in state.removed and track_id not in state.unmasked

    def masked_tracks(self) -> tuple[Track, ...]:
        state = self.state
        return tuple(
            t for i, t in state.tracks.items() if i not in state.removed and i not in state.unmasked
        )

    @property
    def confirmed(self) -> Confirm | None:
        """The confirmation in force (none once the plan was edited after it)."""
        return self.state.confirmed

    def boxes_at(self, frame: int) -> list[tuple[str, Box]]:
        """The masked boxes on `frame`, before the margin is added."""
        out = []
        for track in self.masked_tracks():
            box = track.box_at(frame)
            if box is not None:
                out.append((track.track_id, box))
        return out

    def tracks_at(self, frame: int, x: float, y: float) -> list[Track]:
        """Every box, masked or not, that holds the point (`x`, `y`) on `frame`: what a
        reviewer's click picks."""
        found = []
        for track in self.tracks:
            box = track.box_at(frame)
            if box is not None and box.contains(x, y):
                found.append(track)
        return found

    def seconds_at(self, frame: int) -> float:
        """Time of `frame` from the start of the clip."""
        return frame / self.frame_rate

    # -- replay --

    def _step(self, state: PlanState, edit: PlanEdit) -> PlanState:
        if state.last_edit is not None and edit.at < state.last_edit:
            raise EditRefused(None, "an edit cannot be dated before the one it follows")
        tracks = dict(state.tracks)
        removed = dict(state.removed)
        unmasked = dict(state.unmasked)
        confirmed: Confirm | None = None  # any edit but a confirmation withdraws it
        match edit:
            case AddBox():
                if edit.track_id in tracks:
                    raise EditRefused(edit.track_id, "there is already a box with that id")
                self._check_keyframes(edit.track_id, edit.keyframes)
                try:
                    tracks[edit.track_id] = Track(
                        track_id=edit.track_id,
                        origin="reviewer",
                        label=edit.label,
                        keyframes=edit.keyframes,
                        start=edit.keyframes[0].frame,
                        end=edit.keyframes[-1].frame,
                    )
                except ValueError as exc:
                    raise EditRefused(edit.track_id, _first_error(exc)) from None
            case SetKeyframe():
                track = _known(tracks, edit.track_id)
                if edit.track_id in removed:
                    raise EditRefused(edit.track_id, "it was removed: put it back first")
                key = Keyframe(frame=edit.frame, box=edit.box)
                self._check_keyframes(edit.track_id, (key,))
                tracks[edit.track_id] = track.with_keyframe(key)
            case DeleteKeyframe():
                track = _known(tracks, edit.track_id)
                if edit.frame not in {k.frame for k in track.keyframes}:
                    raise EditRefused(edit.track_id, f"it has no keyframe on frame {edit.frame}")
                if len(track.keyframes) == 1:
                    raise EditRefused(
                        edit.track_id, "that is its only keyframe: remove the box instead"
                    )
                tracks[edit.track_id] = track.without_keyframe(edit.frame)
            case RemoveBox():
                _known(tracks, edit.track_id)
                if edit.track_id in removed:
                    raise EditRefused(edit.track_id, "it is already removed")
                removed[edit.track_id] = edit.reason
            case RestoreBox():
                _known(tracks, edit.track_id)
                if removed.pop(edit.track_id, None) is None:
                    raise EditRefused(edit.track_id, "it was not removed")
            case Unmask():
                track = _known(tracks, edit.track_id)
                if track.origin == "reviewer":
                    raise EditRefused(
                        edit.track_id, "a drawn box is there to mask: remove it instead"
                    )
                if edit.track_id in unmasked:
                    raise EditRefused(edit.track_id, "it is already un-masked")
                unmasked[edit.track_id] = edit.reason
            case Mask():
                _known(tracks, edit.track_id)
                if unmasked.pop(edit.track_id, None) is None:
                    raise EditRefused(edit.track_id, "it is not un-masked")
            case Confirm():
                if state.confirmed is not None:
                    raise EditRefused(None, "the plan is already confirmed")
                confirmed = edit
        return PlanState(
            MappingProxyType(tracks),
            MappingProxyType(removed),
            MappingProxyType(unmasked),
            confirmed=confirmed,
            last_edit=edit.at,
        )

    def _check_keyframes(self, track_id: str, keys: Iterable[Keyframe]) -> None:
        for key in keys:
            if key.frame >= self.frame_count:
                raise EditRefused(
                    track_id, f"frame {key.frame} is past the clip's last ({self.frame_count - 1})"
                )
            box = key.box
            if box.x1 <= 0 or box.y1 <= 0 or box.x0 >= self.width or box.y0 >= self.height:
                raise EditRefused(track_id, f"the box on frame {key.frame} is off the picture")


def _known(tracks: Mapping[str, Track], track_id: str) -> Track:
    try:
        return tracks[track_id]
    except KeyError:
        raise UnknownTrack(track_id) from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            return str(found[0].get("msg", exc))
    return str(exc)
