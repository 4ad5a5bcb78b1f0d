"""The evidence pack: one report snapshot as JSON, CSV and PDF in a ZIP with a signed manifest.

Pure (no Django): the portal builds the pack with its signing key, and the offline
verifier (``python -m audit.verify pack.zip``) opens it with this same code. The
manifest lists each file's SHA-256 and names the snapshot (the signed chain head's
sequence number and hash); the portal signs the manifest's canonical body, so a file
changed, added or removed after export is named by the verifier.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.chain import SIGNATURE_MEMBERS, canonical, signature_block_problem
from he.signing import public_key_b64, sign, verify

PACK_FORMAT = "consortium-evidence-pack-v1"
MANIFEST = "manifest.json"
# The pack's files in the order they are listed and zipped.
FILES = ("report.json", "report.csv", "report.pdf")

MANIFEST_SIGNATURE = SIGNATURE_MEMBERS - {"body_sha256"}  # the manifest is hashed whole


class PackMalformed(Exception):
    """Not a readable evidence pack (no manifest, not a ZIP, a manifest of the wrong shape)."""


class PackInvalid(Exception):
    """An evidence pack whose manifest or files do not verify; the message names them."""


@dataclass(frozen=True)
class Pack:
    """An opened pack whose manifest signature and file digests were checked."""

    manifest: dict[str, Any]
    files: dict[str, bytes]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_message(body_sha256: str) -> bytes:
    """The exact bytes the portal signs for a pack's manifest."""
    return f"{PACK_FORMAT}\n{body_sha256}".encode()


def _body_sha256(manifest: Mapping[str, Any]) -> str:
    return sha256(canonical({k: v for k, v in manifest.items() if k != "signature"}))


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The manifest file's bytes (readable; its digest is what the export event names)."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def manifest_build(
    report: Mapping[str, Any], files: Mapping[str, bytes], key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The signed manifest of ``files`` rendered from ``report`` (a signed audit report)."""
    head = report["signed_head"]
    manifest: dict[str, Any] = {
        "format": PACK_FORMAT,
        "consortium": report["consortium"],
        "created_at": report["generated_at"],
        "generated_by": report["generated_by"],
        "snapshot": {
            "seq": head["seq"],
            "head_hash": head["head_hash"],
            "signed_at": head["signed_at"],
        },
        "report_sha256": report["signature"]["body_sha256"],
        "files": [
            {"name": name, "sha256": sha256(files[name]), "bytes": len(files[name])}
            for name in FILES
        ],
    }
    manifest["signature"] = {
        "algorithm": "Ed25519",
        "public_key": public_key_b64(key),
        "value": sign(key, manifest_message(_body_sha256(manifest))),
    }
    return manifest


def _zip_time(iso: str) -> tuple[int, int, int, int, int, int]:
    """A ZIP entry's timestamp from the snapshot's time, so the same snapshot zips the same."""
    date, _, clock = iso.partition("T")
    year, month, day = (int(part) for part in date.split("-"))
    hour, minute, second = (int(float(part)) for part in clock[:8].split(":"))
    return (max(year, 1980), month, day, hour, minute, second)


def pack_build(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """The ZIP: the manifest first, then the files; deterministic for one snapshot."""
    out = io.BytesIO()
    when = _zip_time(manifest["created_at"])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in ((MANIFEST, encode_manifest(manifest)), *files.items()):
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()


def _read_zip(raw: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PackMalformed(f"not a readable ZIP file ({exc})") from exc


def _manifest_of(contents: Mapping[str, bytes]) -> dict[str, Any]:
    if MANIFEST not in contents:
        raise PackMalformed(f"no {MANIFEST} in the ZIP: not an evidence pack")
    try:
        manifest = json.loads(contents[MANIFEST].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackMalformed(f"{MANIFEST}: not JSON ({exc})") from exc
    ok = (
        isinstance(manifest, dict)
        and manifest.get("format") == PACK_FORMAT
        and isinstance(manifest.get("files"), list)
        and all(isinstance(f, dict) for f in manifest["files"])
        and isinstance(manifest.get("signature"), dict)
        and isinstance(manifest.get("snapshot"), dict)
    )
    if not ok:
        raise PackMalformed(f"{MANIFEST}: not an evidence pack manifest ({PACK_FORMAT})")
    return manifest


def _check_signature(manifest: Mapping[str, Any], trusted: Sequence[str]) -> None:
    signature = manifest["signature"]
    if (problem := signature_block_problem(signature, MANIFEST_SIGNATURE)) is not None:
        raise PackInvalid(f"{MANIFEST}: {problem}")
    if signature.get("public_key") not in set(trusted):
        raise PackInvalid(f"{MANIFEST}: signed by a key that is not the portal's trusted key")
    message = manifest_message(_body_sha256(manifest))
    if not verify(str(signature["public_key"]), message, str(signature.get("value", ""))):
        raise PackInvalid(f"{MANIFEST}: the portal's signature over the manifest does not verify")


def _changed_files(manifest: Mapping[str, Any], contents: Mapping[str, bytes]) -> list[str]:
    """Every file that differs from the signed manifest, with what is wrong with it."""
    listed = {str(f.get("name")): f for f in manifest["files"]}
    problems = []
    for name, entry in listed.items():
        if name not in contents:
            problems.append(f"{name} is listed in the signed manifest but missing")
        elif sha256(contents[name]) != entry.get("sha256"):
            problems.append(
                f"{name} was changed after the portal signed the pack (SHA-256 "
                f"{sha256(contents[name])}, the manifest says {entry.get('sha256')})"
            )
    problems += [
        f"{name} is not in the signed manifest"
        for name in sorted(contents)
        if name not in listed and name != MANIFEST
    ]
    return problems


def pack_open(raw: bytes, trusted: Sequence[str]) -> Pack:
    """Check the manifest's signature and every file's digest; name each file that fails."""
    contents = _read_zip(raw)
    manifest = _manifest_of(contents)
    _check_signature(manifest, trusted)
    problems = _changed_files(manifest, contents)
    if problems:
        raise PackInvalid("; ".join(problems))
    return Pack(manifest, {k: v for k, v in contents.items() if k != MANIFEST})


def snapshot_problem(manifest: Mapping[str, Any], report: Mapping[str, Any]) -> str | None:
    """Why the manifest and the JSON report name different snapshots, or None."""
    head, snapshot = report.get("signed_head") or {}, manifest["snapshot"]
    if (snapshot.get("seq"), snapshot.get("head_hash")) != (head.get("seq"), head.get("head_hash")):
        return "the manifest's snapshot is not the report's signed head"
    if manifest.get("report_sha256") != (report.get("signature") or {}).get("body_sha256"):
        return "the manifest names another report than report.json"
    return None
