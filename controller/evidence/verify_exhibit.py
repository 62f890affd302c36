"""Check a CCTV evidence exhibit: run `python3 verify.py` in the exhibit's folder.

This program needs nothing but Python 3.8 or later: no package to install, no network.
It checks, and says in plain words:

1. the control room's signature on manifest.json (Ed25519, checked by the arithmetic of
   RFC 8032 written out below, with the public key in controller-key.pem);
2. every file the manifest lists: present, the stated size, the stated SHA-256;
3. for each camera unit, the unit's own signed record of what it recorded
   (units/<unit>/segment-manifest.json): the unit's signature, the hash chain of its
   recording index, that each source segment the footage was made from is the one the
   unit recorded, and the checkpoints the unit reported at the time.

It prints one line per file, "verifies" or why it does not, and exits with status 0
only when everything verifies (1 otherwise). Compare the key id it prints with the one
the control room publishes: a signature only proves who made the exhibit when the key
is known to be theirs.

Usage: python3 verify.py [exhibit folder]   (default: the folder this file is in)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: subscripted tuple needs Python 3.9 at run time
    Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z

__all__ = ["Finding", "ed25519_verify", "main", "verify_exhibit"]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
KEY_FILE = "controller-key.pem"
EXHIBIT_FORMAT = "cctv-exhibit"
SIGNATURE_FORMAT = "cctv-exhibit-signature"
#: The signature is over this tag followed by the SHA-256 of manifest.json in hex.
SIGNATURE_DOMAIN = b"cctv-exhibit-manifest-v1\0"
CHECKPOINT_DOMAIN = b"cctv-segment-checkpoint-v1\0"
GENESIS_HASH = "0" * 64
#: DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410) before the 32 key bytes.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_UTC = timezone.utc  # noqa: UP017 - runs on Python 3.8, which has no datetime.UTC

# --- Ed25519 signature check (RFC 8032, section 5.1, reference arithmetic) ---------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _inv(x: int) -> int:
    return pow(x, _P - 2, _P)


def _add(a: Point, b: Point) -> Point:
    pa = (a[1] - a[0]) * (b[1] - b[0]) % _P
    pb = (a[1] + a[0]) * (b[1] + b[0]) % _P
    pc = 2 * a[3] * b[3] * _D % _P
    pd = 2 * a[2] * b[2] % _P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(scalar: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * _inv(_D * y * y + 1) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(data: bytes) -> Point | None:
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _compress(point: Point) -> bytes:
    z = _inv(point[2])
    x, y = point[0] * z % _P, point[1] * z % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


_GY = 4 * _inv(5) % _P
_GX = _recover_x(_GY, 0)
assert _GX is not None
_BASE: Point = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`
    (32 raw bytes). A non-canonical S (S >= L), a point that does not decode, or a wrong
    length is a failed check, never an exception. The check encodes [S]B - [k]A and
    compares it with R byte for byte (cofactorless, as OpenSSL does)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decompress(public_key)
    if a is None or _decompress(signature[:32]) is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    minus_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    r = _add(_mul(s, _BASE), _mul(k % _L, minus_a))
    return _compress(r) == signature[:32]


# --- helpers ------------------------------------------------------------------------------


class Finding:
    """One line of the report: a file or check, and whether it verifies."""

    def __init__(self, subject: str, ok: bool, detail: str = "") -> None:
        self.subject = subject
        self.ok = ok
        self.detail = detail

    def line(self) -> str:
        word = "verifies" if self.ok else "DOES NOT VERIFY"
        return f"{self.subject}: {word}" + (f" ({self.detail})" if self.detail else "")


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def iso_utc(text: str) -> str:
    """A timestamp in the one form the unit signs: UTC, microseconds, "Z"."""
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return value.astimezone(_UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def sha256_file(path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


def _safe_name(name: Any) -> bool:
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")):
        return False
    parts = name.replace("\\", "/").split("/")
    return all(p not in ("", ".", "..") for p in parts) and ":" not in name


def read_public_key(data: bytes) -> bytes:
    """The raw key from controller-key.pem, written in exactly one form (so that any
    changed byte in the file is seen)."""
    lines = data.decode("ascii").split("\n")
    if lines[0] != "-----BEGIN PUBLIC KEY-----" or lines[-2:] != ["-----END PUBLIC KEY-----", ""]:
        raise ValueError("not a PEM public key")
    der = base64.b64decode("".join(lines[1:-2]), validate=True)
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise ValueError("not an Ed25519 public key")
    raw = der[len(_SPKI_PREFIX) :]
    if data != public_key_pem(raw):
        raise ValueError("not in the form the control room writes (the file was changed)")
    return raw


def public_key_pem(raw: bytes) -> bytes:
    body = base64.b64encode(_SPKI_PREFIX + raw).decode("ascii")
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode("ascii")


def signature_document(manifest_sha256: str, key: str, signature: bytes) -> bytes:
    """manifest.sig exactly as the control room writes it."""
    doc = {
        "format": SIGNATURE_FORMAT,
        "version": 1,
        "algorithm": "Ed25519",
        "signed_file": MANIFEST,
        "manifest_sha256": manifest_sha256,
        "key_id": key,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def signed_message(manifest_sha256: str) -> bytes:
    return SIGNATURE_DOMAIN + manifest_sha256.encode("ascii")


# --- the checks ---------------------------------------------------------------------------


def _check_signature(folder: str) -> tuple[list[Finding], bytes | None]:
    """Findings for manifest.json, manifest.sig and the key, and the manifest's bytes."""
    paths = {name: os.path.join(folder, name) for name in (MANIFEST, SIGNATURE, KEY_FILE)}
    missing = [name for name, path in paths.items() if not os.path.isfile(path)]
    if missing:
        return [Finding(name, False, "missing") for name in missing], None
    with open(paths[MANIFEST], "rb") as f:
        manifest = f.read()
    actual = hashlib.sha256(manifest).hexdigest()
    try:
        with open(paths[KEY_FILE], "rb") as f:
            raw = read_public_key(f.read())
    except (ValueError, UnicodeDecodeError) as exc:
        return [Finding(KEY_FILE, False, f"cannot be read: {exc}")], manifest
    try:
        with open(paths[SIGNATURE], "rb") as f:
            sig_bytes = f.read()
        doc = json.loads(sig_bytes.decode("ascii"))
        stated = str(doc["manifest_sha256"])
        signature = base64.b64decode(str(doc["signature"]), validate=True)
        if sig_bytes != signature_document(stated, str(doc["key_id"]), signature):
            raise ValueError("not in the form the control room writes (the file was changed)")
    except (ValueError, KeyError, TypeError) as exc:
        return [Finding(SIGNATURE, False, f"cannot be read: {exc}")], manifest
    good = ed25519_verify(raw, signed_message(stated), signature)
    if not good and doc["key_id"] != key_id(raw):
        why = f"key id {key_id(raw)} is not the key id {doc['key_id']} that signed this exhibit"
        return [Finding(KEY_FILE, False, why)], manifest
    if not good:
        return [Finding(SIGNATURE, False, "the signature does not verify (altered)")], manifest
    if doc["key_id"] != key_id(raw):
        return [Finding(SIGNATURE, False, "names another key than the one that signed")], manifest
    if stated != actual:
        why = "its SHA-256 is not the one the control room signed (altered after signing)"
        return [Finding(MANIFEST, False, why)], manifest
    return [
        Finding(SIGNATURE, True, f"Ed25519 signature by key id {key_id(raw)}"),
        Finding(KEY_FILE, True, f"key id {key_id(raw)}"),
        Finding(MANIFEST, True, f"SHA-256 {actual}"),
    ], manifest


def _check_files(folder: str, manifest: dict[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    for item in manifest.get("files", []):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not _safe_name(name):
            findings.append(Finding(repr(name), False, "not a file name inside the exhibit"))
            continue
        path = os.path.join(folder, *name.split("/"))
        if not os.path.isfile(path):
            findings.append(Finding(name, False, "missing"))
            continue
        size, digest = sha256_file(path)
        if digest != item.get("sha256"):
            why = "its SHA-256 is not the one in the manifest (altered or replaced)"
            findings.append(Finding(name, False, why))
        elif size != item.get("size"):
            findings.append(Finding(name, False, f"{size} bytes, the manifest says {item['size']}"))
        else:
            findings.append(Finding(name, True, f"SHA-256 {digest}"))
    return findings


def _extra_files(folder: str, manifest: dict[str, Any]) -> list[str]:
    listed = {item.get("name") for item in manifest.get("files", []) if isinstance(item, dict)}
    listed |= {MANIFEST, SIGNATURE, KEY_FILE}
    extra = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel not in listed:
                extra.append(rel)
    return sorted(extra)


def _check_chain(entries: list[dict[str, Any]], unit_id: str) -> list[str]:
    problems = []
    before: dict[str, Any] | None = None
    for entry in entries:
        seq, body = entry["seq"], entry["body"]
        if before is None and seq == 1 and entry["prev_hash"] != GENESIS_HASH:
            problems.append(f"entry {seq} does not follow from the chain's start")
        if before is not None and (
            seq != before["seq"] + 1 or entry["prev_hash"] != before["chain_hash"]
        ):
            problems.append(f"entry {seq} does not link to the entry before it")
        if body.get("unit_id") != unit_id:
            problems.append(f"entry {seq} belongs to unit {body.get('unit_id')!r}")
        digest = hashlib.sha256(bytes.fromhex(entry["prev_hash"]) + canonical_json(body))
        if digest.hexdigest() != entry["chain_hash"]:
            problems.append(f"entry {seq} does not match its chain hash (edited)")
        before = entry
    return problems


def _checkpoint_ok(checkpoint: dict[str, Any], unit_key: bytes) -> bool:
    doc = {
        "unit_id": checkpoint["unit_id"],
        "count": checkpoint["count"],
        "head": checkpoint["head"],
        "signed_at": iso_utc(checkpoint["signed_at"]),
        "key_id": checkpoint["key_id"],
    }
    signature = base64.b64decode(checkpoint["signature"], validate=True)
    return checkpoint["key_id"] == key_id(unit_key) and ed25519_verify(
        unit_key, CHECKPOINT_DOMAIN + canonical_json(doc), signature
    )


def _check_unit(folder: str, unit: dict[str, Any], sources: list[dict[str, Any]]) -> Finding:
    """The unit's own signed record against the sources the footage was made from."""
    unit_id = str(unit["unit_id"])
    subject = f"unit {unit_id} recording record"
    try:
        unit_key = bytes.fromhex(unit["signing_key"])
        path = os.path.join(folder, *str(unit["segment_manifest"]).split("/"))
        with open(path, "rb") as f:
            record = json.loads(f.read())
        entries = record["entries"]
        checkpoint = record["checkpoint"]
        problems = _check_chain(entries, unit_id)
        if checkpoint["unit_id"] != unit_id or not _checkpoint_ok(checkpoint, unit_key):
            problems.append("the unit's signature on its checkpoint does not verify")
        last = entries[-1] if entries else None
        if last is None or (last["seq"], last["chain_hash"]) != (
            checkpoint["count"],
            checkpoint["head"],
        ):
            problems.append("the chain does not end at the unit's signed checkpoint")
        recorded = {
            e["body"]["segment_id"]: e["body"] for e in entries if e["body"]["kind"] == "segment"
        }
        for source in sources:
            body = recorded.get(source["segment_id"])
            if body is None:
                problems.append(f"segment {source['segment_id']} is not in the unit's record")
            elif (body["sha256"], body["size"]) != (source["sha256"], source["size"]):
                problems.append(f"segment {source['segment_id']} is not the one the unit recorded")
        by_seq = {e["seq"]: e for e in entries}
        for reported in unit.get("reported_checkpoints", []):
            entry = by_seq.get(reported["count"])
            if not _checkpoint_ok(reported, unit_key):
                problems.append(f"a checkpoint reported at {reported['signed_at']} is not signed")
            elif entry is not None and entry["chain_hash"] != reported["head"]:
                problems.append(
                    f"the checkpoint reported at {reported['signed_at']} differs from the record"
                )
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return Finding(subject, False, f"cannot be checked: {exc!r}")
    if problems:
        return Finding(subject, False, "; ".join(problems))
    reported_n = len(unit.get("reported_checkpoints", []))
    detail = (
        f"signed by the unit (key id {key_id(unit_key)}), {len(entries)} chained entries, "
        f"{len(sources)} source segments as recorded, {reported_n} reported checkpoints agree"
    )
    return Finding(subject, True, detail)


def verify_exhibit(folder: str) -> tuple[list[Finding], list[str], dict[str, Any] | None]:
    """Every finding, files present but not part of the exhibit, and the manifest when
    it could be read."""
    findings, manifest_bytes = _check_signature(folder)
    if manifest_bytes is None or not all(f.ok for f in findings):
        return findings, [], None
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != EXHIBIT_FORMAT:
            raise ValueError("not an exhibit manifest")
    except ValueError as exc:
        return [*findings[:2], Finding(MANIFEST, False, f"cannot be read: {exc}")], [], None
    findings += _check_files(folder, manifest)
    failed = {f.subject for f in findings if not f.ok}
    for unit in manifest.get("units", []):
        if unit.get("segment_manifest") in failed:
            continue  # named above: a changed record cannot be checked against itself
        sources = [s for s in manifest.get("sources", []) if s.get("unit_id") == unit["unit_id"]]
        findings.append(_check_unit(folder, unit, sources))
    return findings, _extra_files(folder, manifest), manifest


def _describe(manifest: dict[str, Any]) -> list[str]:
    release = manifest.get("release") or {}
    lines = [f"Exhibit {manifest.get('exhibit', '?')}"]
    if release:
        lines.append(
            f"Released to {release.get('recipient_name', '?')}"
            + (f" ({release['recipient_org']})" if release.get("recipient_org") else "")
            + f" on {release.get('released_at_local', release.get('released_at', '?'))}"
            + f" by {release.get('released_by', '?')}"
        )
    return lines


def main(argv: list[str]) -> int:
    folder = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    if not os.path.isdir(folder):
        print(f"{folder}: not a folder", file=sys.stderr)
        return 1
    findings, extra, manifest = verify_exhibit(folder)
    if manifest is not None:
        for line in _describe(manifest):
            print(line)
        print()
    for finding in findings:
        print(finding.line())
    for name in extra:
        print(f"{name}: not part of the exhibit (not covered by the signature; ignored)")
    failed = [f.subject for f in findings if not f.ok]
    if manifest is None and failed:
        print(
            "The other files were not checked: the list of their SHA-256 values "
            f"({MANIFEST}) cannot be trusted."
        )
    print()
    if failed:
        print(f"NOT VERIFIED: {', '.join(failed)}")
        return 1
    print(f"EVERYTHING VERIFIES: {len(findings)} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
