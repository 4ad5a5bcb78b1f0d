"""One round's page at any size: its submissions re-verified, filtered and sorted, its
metric reports filtered, and its manifest as rows with each upload's size and signature."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consortium.rounds import selectors as rounds_selectors
from consortium.rounds.models import MetricReport, Round, Submission
from he.signing import update_message, verify

# ?flag= values: what can be wrong with an accepted upload, in words.
FLAGS = {
    "bad-signature": "signature does not verify",
    "rotated-key": "signing key rotated since",
    "not-in-manifest": "not in the manifest",
}
SUBMISSION_SORTS = {
    "bank": "bank",
    "received": "received, first to last",
    "-received": "received, last to first",
    "-size": "largest first",
    "-epsilon": "highest ε first",
}
REPORT_SORTS = {"bank": "bank", "-auprc": "highest AUPRC first", "auprc": "lowest AUPRC first"}


@dataclass(frozen=True)
class RowFilter:
    """What the person asked to see: bank slug or name contains ``q``, bank ``status``,
    a ``flag`` (``FLAGS``), and the order."""

    q: str = ""
    status: str = ""
    flag: str = ""
    sort: str = "bank"
    report_sort: str = "bank"

    @property
    def active(self) -> bool:
        return bool(self.q or self.status or self.flag)


@dataclass(frozen=True)
class SubmissionRow:
    """An accepted update as the round page shows it, with its signature checked again."""

    submission: Submission
    signature_ok: bool
    key_still_current: bool
    in_manifest: bool
    epsilon: float | None = None  # signed with the upload (selectors_epsilon)

    @property
    def flags(self) -> list[str]:
        """The ``FLAGS`` keys that apply to this row."""
        found = {
            "bad-signature": not self.signature_ok,
            "rotated-key": not self.key_still_current,
            "not-in-manifest": not self.in_manifest,
        }
        return [k for k, v in found.items() if v]


def submission_rows(rnd: Round, epsilon: dict[str, float] | None = None) -> list[SubmissionRow]:
    """Re-verify every stored signature with the key that verified it at upload time.

    All of a round's uploads (one query): the page's summary ("all 200 verify") and its
    flag filter need every row, and an Ed25519 check costs tens of microseconds.
    """
    manifest = {(i.get("bank"), i.get("digest")) for i in rnd.manifest.get("inputs", [])}
    published = rnd.state == "published"
    rows = []
    for sub in rounds_selectors.submission_list_for_round(rnd):
        message = update_message(rnd.number, sub.bank.slug, sub.digest)
        rows.append(
            SubmissionRow(
                submission=sub,
                signature_ok=verify(sub.signing_public_key, message, sub.signature),
                key_still_current=sub.signing_public_key == sub.bank.signing_public_key,
                # Before publication no upload is in a manifest yet: nothing to flag.
                in_manifest=(sub.bank.slug, sub.digest) in manifest or not published,
                epsilon=(epsilon or {}).get(sub.bank.slug),
            )
        )
    return rows


def _matches(bank: Any, wanted: RowFilter) -> bool:
    q = wanted.q.lower()
    if q and q not in bank.slug.lower() and q not in bank.name.lower():
        return False
    return not wanted.status or bank.status == wanted.status


def submission_rows_filtered(
    rows: Sequence[SubmissionRow], wanted: RowFilter
) -> list[SubmissionRow]:
    """The rows the filter keeps, in the order it asks for."""
    kept = [
        r
        for r in rows
        if _matches(r.submission.bank, wanted) and (not wanted.flag or wanted.flag in r.flags)
    ]
    keys: dict[str, Callable[[SubmissionRow], Any]] = {
        "bank": lambda r: r.submission.bank.slug,
        "received": lambda r: r.submission.received_at,
        "-received": lambda r: r.submission.received_at,
        "-size": lambda r: r.submission.size_bytes,
        "-epsilon": lambda r: r.epsilon if r.epsilon is not None else float("-inf"),
    }
    sort = wanted.sort if wanted.sort in keys else "bank"
    return sorted(kept, key=keys[sort], reverse=sort.startswith("-"))


def _auprc(report: MetricReport) -> float:
    value = report.metrics.get("auprc") if isinstance(report.metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)


def report_rows_filtered(reports: Sequence[MetricReport], wanted: RowFilter) -> list[MetricReport]:
    """Metric reports of the banks the filter keeps; reports without AUPRC sort last."""
    kept = [r for r in reports if _matches(r.bank, wanted)]
    if wanted.report_sort not in {"auprc", "-auprc"}:
        return kept
    with_value = [r for r in kept if _auprc(r) == _auprc(r)]  # NaN is not equal to itself
    without = [r for r in kept if _auprc(r) != _auprc(r)]
    ordered = sorted(with_value, key=_auprc, reverse=wanted.report_sort == "-auprc")
    return ordered + without


@dataclass(frozen=True)
class ManifestRow:
    """One input of a published sum, with what the portal stored about it."""

    bank: str
    bank_name: str
    digest: str
    size_bytes: int | None
    signature: str  # "verified", "does not verify" or "no stored upload"


def manifest_rows(rnd: Round, rows: Sequence[SubmissionRow]) -> list[ManifestRow]:
    """The manifest's inputs in its own order, joined with the uploads by bank and digest."""
    stored = {(r.submission.bank.slug, r.submission.digest): r for r in rows}
    out = []
    for item in rnd.manifest.get("inputs", []):
        bank, digest = str(item.get("bank", "")), str(item.get("digest", ""))
        row = stored.get((bank, digest))
        out.append(
            ManifestRow(
                bank=bank,
                bank_name=row.submission.bank.name if row else "",
                digest=digest,
                size_bytes=row.submission.size_bytes if row else None,
                signature=_signature_words(row),
            )
        )
    return out


def _signature_words(row: SubmissionRow | None) -> str:
    if row is None:
        return "no stored upload"
    return "verified" if row.signature_ok else "does not verify"
