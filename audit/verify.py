"""Check an exported audit report offline: no database, no Django, no portal.

    python -m audit.verify report.json --public-key portal.pub [--genesis genesis.json]
    python -m audit.verify evidence-pack.zip --public-key portal.pub

An evidence pack (``audit.pack``) is checked first as a whole: the portal's signature
over its manifest, then every file's SHA-256 against it (each changed, missing or added
file is named), then that the manifest and report.json name the same snapshot; then
report.json as below.

Re-computes every event hash and link, checks every checkpoint signature (and, where
the report holds the event a checkpoint names, that the two agree), re-verifies every
submission signature, cross-checks manifests and submissions against the events,
re-verifies the banks' roster chain and objections (``audit.roster_verify``),
recomputes the disputed rounds from the signed objections and clearances
(``audit.disputes``) and the gate decisions from the signed verdicts (``audit.gates``),
checks the portal's signature over the whole report and finally
that the file's bytes are exactly the signed encoding, so that changing any byte of the
file is noticed.

Exit status: 0 valid; 1 invalid (the first failure is named); 2 the report or the key
cannot be read or is not a report at all.

Only the portal's public key given here (``--public-key``, the ``public_key`` of
``GET /api/v1/audit/public-key``) is trusted; the key printed inside the report is not.
The roster is trusted only as far as the banks' signatures go; ``--genesis`` pins the
genesis a bank handed over, which the report's must then equal.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.chain import (
    GENESIS,
    checkpoint_problem,
    encode_report,
    report_body_sha256,
    report_message,
    signature_block_problem,
    verify_events,
)
from audit.disputes import check_disputes
from audit.gates import check_gates
from audit.pack import PackInvalid, PackMalformed, pack_open, snapshot_problem
from audit.report_shape import Malformed, check_shape
from audit.roster_verify import (
    RosterProblem,
    check_roster,
    load_pinned_genesis,
)
from governance import RosterVersion
from he.signing import update_signature_valid, update_signed_digest, verify

REPORT_FORMAT = "consortium-audit-report-v1"


class Invalid(Exception):
    """The report is a report, but something in it does not verify."""


@dataclass
class Verdict:
    ok: bool
    failure: str = ""
    summary: list[str] = field(default_factory=list)


# --- reading ----------------------------------------------------------------------------


def _key_from_text(text: str, path: str) -> str:
    text = text.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text)["public_key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Malformed(f"{path}: JSON without a public_key member") from exc
    if text.startswith("-----BEGIN"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise Malformed(f"{path}: not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise Malformed(f"{path}: the PEM key is not an Ed25519 key")
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Malformed(f"{path}: not base64 ({exc})") from exc
    if len(raw) != 32:
        raise Malformed(f"{path}: an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return base64.b64encode(raw).decode()


def load_public_key(path: str) -> str:
    """A public key file: base64 of the raw 32 bytes, a PEM key, or the API's JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Malformed(f"{path}: cannot read the public key ({exc})") from exc
    return _key_from_text(text, path)


def load_report(path: str) -> tuple[dict[str, Any], bytes]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise Malformed(f"{path}: cannot read the report ({exc.strerror or exc})") from exc
    return parse_report(raw, path), raw


def parse_report(raw: bytes, path: str) -> dict[str, Any]:
    """A report from its bytes; ``path`` names it in the messages."""
    try:
        report = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Malformed(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise Malformed(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise Malformed(f"{path}: not a consortium audit report (format {REPORT_FORMAT})")
    try:
        check_shape(report)
    except Malformed as exc:
        raise Malformed(f"{path}: {exc}") from None
    return report


# --- checks -------------------------------------------------------------------------------


def _check_events(report: dict[str, Any]) -> str:
    events, chain = report["events"], report["chain"]
    if not events:
        return "no events in the report's range"
    first = events[0]["seq"]
    if first == 1 and chain["first_prev_hash"] != GENESIS:
        raise Invalid("event #1 must link to the genesis hash")
    if events[0]["prev_hash"] != chain["first_prev_hash"]:
        raise Invalid(f"event #{first} does not link to the chain's recorded predecessor")
    walk = verify_events(events, prev_hash=chain["first_prev_hash"], first_seq=first)
    if not walk.ok:
        raise Invalid(walk.reason)
    if (chain.get("first_seq"), chain.get("last_seq"), chain.get("events")) != (
        first,
        walk.last_seq,
        walk.events,
    ):
        raise Invalid("the chain summary does not match the events the report holds")
    return f"events #{first} to #{walk.last_seq} ({walk.events}): every hash and link holds"


def _check_checkpoints(report: dict[str, Any], trusted: set[str]) -> str:
    hashes = {e["seq"]: e["hash"] for e in report["events"]}
    hashes[0] = GENESIS
    checkpoints = report["checkpoints"]
    if report["signed_head"] not in checkpoints:
        checkpoints = [*checkpoints, report["signed_head"]]
    linked = 0
    for cp in checkpoints:
        problem = checkpoint_problem(cp, trusted_keys=trusted, hash_at_seq=hashes.get(cp["seq"]))
        if problem is not None:
            raise Invalid(f"checkpoint of event #{cp['seq']} ({cp['reason']}) {problem}")
        linked += cp["seq"] in hashes
    return f"checkpoints: {len(checkpoints)} signatures valid, {linked} matched to events here"


def _accepted_events(report: dict[str, Any]) -> dict[tuple[Any, Any], dict[str, Any]]:
    found = {}
    for event in report["events"]:
        data = event["data"]
        if event["action"] == "update.accepted" and isinstance(data, dict):
            found[(data.get("round"), data.get("bank"))] = data
    return found


def _published_events(report: dict[str, Any]) -> dict[Any, Any]:
    return {
        e["data"].get("round"): e["data"]
        for e in report["events"]
        if e["action"] == "round.published" and isinstance(e["data"], dict)
    }


def _check_round(rnd: dict[str, Any], accepted: dict[Any, Any], published: dict[Any, Any]) -> int:
    number, manifest = rnd["number"], rnd.get("manifest") or {}
    inputs = {i.get("digest") for i in manifest.get("inputs", []) if isinstance(i, dict)}
    for sub in rnd["submissions"]:
        where = f"round {number}, submission of bank {sub['bank']}"
        if not update_signature_valid(
            sub["signing_public_key"],
            number,
            sub["bank"],
            sub["digest"],
            sub["signature"],
            epsilon=sub.get("epsilon_spent"),
            budget_left=sub.get("budget_left"),
        ) and not update_signed_digest(
            sub["signing_public_key"], number, sub["bank"], sub["digest"], sub["signature"]
        ):
            raise Invalid(f"{where}: the bank's signature over its digest does not verify")
        if not sub["signature_valid"]:
            raise Invalid(f"{where}: marked invalid although the signature verifies")
        if sub["in_manifest"] != (sub["digest"] in inputs):
            raise Invalid(f"{where}: in_manifest disagrees with the round's manifest")
        event = accepted.get((number, sub["bank"]))
        if event is not None and (
            event.get("digest"),
            event.get("signature"),
            event.get("epsilon_spent"),
        ) != (sub["digest"], sub["signature"], sub.get("epsilon_spent")):
            raise Invalid(f"{where}: differs from the update.accepted event in the trail")
    digests = {s["digest"] for s in rnd["submissions"]}
    if not inputs <= digests:
        raise Invalid(f"round {number}: the manifest names a digest no submission has")
    if number in published and published[number] != rnd.get("manifest"):
        raise Invalid(f"round {number}: the manifest differs from its round.published event")
    return len(rnd["submissions"])


def _check_signature(report: dict[str, Any], raw: bytes | None, trusted: set[str]) -> str:
    signature = report["signature"]
    if (problem := signature_block_problem(signature)) is not None:
        raise Invalid(f"the report: {problem}")
    if signature["public_key"] not in trusted:
        raise Invalid("the report is signed by a key that is not the portal's trusted key")
    if report_body_sha256(report) != signature["body_sha256"]:
        raise Invalid("the report's content was changed after the portal signed it")
    if not verify(
        signature["public_key"], report_message(signature["body_sha256"]), signature["value"]
    ):
        raise Invalid("the portal's signature over the report does not verify")
    if raw is not None and raw != encode_report(report):
        raise Invalid("the file's bytes are not the exact encoding the portal signed")
    return "report signature: valid"


def verify_report(
    report: dict[str, Any],
    raw: bytes | None,
    trusted: Sequence[str],
    *,
    genesis: RosterVersion | None = None,
) -> Verdict:
    """Run every check in order and stop at the first failure; ``genesis`` is pinned."""
    keys = set(trusted)
    lines: list[str] = []
    try:
        lines.append(_check_events(report))
        lines.append(_check_checkpoints(report, keys))
        accepted, published = _accepted_events(report), _published_events(report)
        subs = sum(_check_round(r, accepted, published) for r in report["rounds"])
        lines.append(f"rounds: {len(report['rounds'])}; submission signatures valid: {subs}")
        lines.append(check_roster(report.get("roster"), genesis))
        lines.append(check_disputes(report.get("roster"), report["events"]))
        lines.append(check_gates(report.get("roster"), report["rounds"], report["events"]))
        lines.append(_check_signature(report, raw, keys))
        check = report["verification"]
        if not check["ok"]:
            raise Invalid(f"the portal's own check of its database failed: {check['reason']}")
    except (Invalid, RosterProblem) as exc:
        return Verdict(False, str(exc), lines)
    return Verdict(True, "", lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "report", help="the JSON report or the evidence pack (ZIP) exported from the portal"
    )
    parser.add_argument(
        "--public-key",
        action="append",
        required=True,
        metavar="FILE",
        help="the portal's public key (portal.pub); repeat to trust a retired key too",
    )
    parser.add_argument(
        "--genesis",
        metavar="FILE",
        help="the roster genesis a bank gave you (JSON); the report's genesis must equal it",
    )
    args = parser.parse_args(argv)
    try:
        trusted = [load_public_key(path) for path in args.public_key]
        genesis = load_pinned_genesis(args.genesis) if args.genesis else None
        if zipfile.is_zipfile(args.report):
            return _main_pack(args.report, trusted, genesis)
        report, raw = load_report(args.report)
    except (Malformed, ValueError, PackMalformed) as exc:
        print(f"audit.verify: {exc}", file=sys.stderr)
        return 2
    return _report_verdict(args.report, report, raw, trusted, genesis)


def _main_pack(path: str, trusted: list[str], genesis: RosterVersion | None) -> int:
    """Verify an evidence pack: its manifest and files, then the report inside it."""
    try:
        opened = pack_open(Path(path).read_bytes(), trusted)
    except PackInvalid as exc:
        print(f"{path}: INVALID: {exc}")
        return 1
    raw = opened.files["report.json"]
    try:
        report = parse_report(raw, f"{path}:report.json")
    except Malformed as exc:
        print(f"audit.verify: {exc}", file=sys.stderr)
        return 2
    problem = snapshot_problem(opened.manifest, report)
    if problem is not None:
        print(f"{path}: INVALID: {problem}")
        return 1
    snapshot = opened.manifest["snapshot"]
    names = ", ".join(f["name"] for f in opened.manifest["files"])
    print(f"  ok  manifest signature valid; files as signed: {names}")
    print(f"  ok  snapshot: event #{snapshot['seq']}, head hash {snapshot['head_hash']}")
    return _report_verdict(f"{path}:report.json", report, raw, trusted, genesis)


def _report_verdict(
    path: str,
    report: dict[str, Any],
    raw: bytes,
    trusted: list[str],
    genesis: RosterVersion | None,
) -> int:
    try:
        verdict = verify_report(report, raw, trusted, genesis=genesis)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # The shape check lets through only what the checks can read; this is the net
        # under it, so that no file, however odd, ends in a traceback.
        print(f"audit.verify: {path}: unexpected structure ({exc!r})", file=sys.stderr)
        return 2
    for line in verdict.summary:
        print(f"  ok  {line}")
    if not verdict.ok:
        print(f"{path}: INVALID: {verdict.failure}")
        return 1
    period = report.get("period") or {}
    print(f"{path}: VALID - {report.get('consortium')}, {period.get('from')} to {period.get('to')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
