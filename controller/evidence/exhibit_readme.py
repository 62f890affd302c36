"""README.txt of an exhibit: what the recipient holds, and how to check it, in plain words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CASE_TYPE_WORDS", "readme_text"]

CASE_TYPE_WORDS = {
    "police_request": "Police request",
    "subject_access": "Subject access request",
    "insurance_civil": "Insurance or civil claim",
    "internal_review": "Internal review",
}


def _release_lines(release: Mapping[str, Any]) -> list[str]:
    org = release.get("recipient_org") or ""
    recipient = release["recipient_name"] + (f", {org}" if org else "")
    lines = [
        f"Released on:     {release['released_at_local']}",
        f"Released to:     {recipient}",
        f"Released by:     {release['released_by']}",
        f"Reason:          {release['reason']}",
        f"Lawful basis:    {release['lawful_basis']}",
        f"Method:          {release['method']}",
    ]
    if release.get("reference"):
        lines.append(f"Reference:       {release['reference']}")
    return lines


def readme_text(manifest: Mapping[str, Any], footage: Sequence[Mapping[str, Any]]) -> str:
    """The README for `manifest` (everything but its "files" list, which includes this)."""
    case = manifest["case"]
    kind = CASE_TYPE_WORDS.get(case["case_type"], case["case_type"].replace("_", " "))
    ref = f" ({case['external_ref']})" if case.get("external_ref") else ""
    lines = [
        f"CCTV evidence exhibit {manifest['exhibit']}",
        "=" * (len(manifest["exhibit"]) + 22),
        "",
        f"Case:            {case['number']}, {kind}{ref}",
        f"Exhibit made:    {manifest['made_at_local']}",
        *_release_lines(manifest["release"]),
        "",
        "Footage",
        "-------",
        "Each file below is the camera's own recording, copied without re-encoding into an",
        "MP4 file that any common video player opens. Times are UK local time.",
        "",
    ]
    for item in footage:
        lines.append(f"  {item['file']}")
        lines.append(
            f"    camera unit {item['unit_id']}, {item['start_local']} to {item['end_local']}"
        )
    absent = manifest.get("absent") or []
    if absent:
        lines += ["", "Not included (removed on the unit before it was held, as recorded):"]
        lines += [
            f"  segment {a['segment_id']} from unit {a['unit_id']}: {a['detail']}" for a in absent
        ]
    lines += [
        "",
        "Checking the exhibit",
        "--------------------",
        "In this folder, run:   python3 verify.py",
        "(Python 3.8 or later; nothing else needs installing, no network is used.)",
        "",
        "It checks the control room's signature on manifest.json, the SHA-256 fingerprint of",
        "every file, and the camera unit's own signed record of what it recorded. It prints",
        '"verifies" for each file, or names the file that does not, and ends with',
        '"EVERYTHING VERIFIES" only when nothing was changed.',
        "",
        "The exhibit is signed with the control room's key, key id "
        f"{manifest['signer']['key_id']}.",
        "Ask the control room to confirm that key id: the signature proves who made the",
        "exhibit only when the key is known to be theirs.",
        "",
        "Files",
        "-----",
        "  README.txt              this note",
        "  footage/                the video files",
        "  manifest.json           what the exhibit holds: the release record, the SHA-256 of",
        "                          every file and of each encrypted source segment, and the",
        "                          camera unit's checkpoints with the result of checking them",
        "  manifest.sig            the control room's Ed25519 signature over manifest.json",
        "  controller-key.pem      the control room's public key that checks it",
        "  units/                  each camera unit's signed record of its recordings",
        "  verify.py               the checking program described above",
        "",
        "Keep this exhibit secure: it shows people who can be identified. Copy it whole; a",
        "copy that still says EVERYTHING VERIFIES is as good as the original.",
        "",
    ]
    return "\n".join(lines)
