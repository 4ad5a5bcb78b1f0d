"""Before decrypting a v2 aggregate: check its manifest's record, and recompute it when chosen.

``check_record`` verifies the ``SecAggRecord`` of a published v2 round against the node's
verified roster (every advertised key and every reveal signed under roster keys, at least
``t`` reveals answering one request, survivors = the manifest's inputs, dropped = U1 minus
survivors). ``recompute_aggregate`` then rebuilds the correction from the reveals exactly as
the portal does and sums the survivors' signed uploads itself: an operator who publishes
anything but that sum is caught ("aggregate_substituted"). CKKS addition and the masks are
exact modulo ``q``, so the recomputed container is byte for byte the portal's.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from bank_node.checks import Refused
from bank_node.secagg import (
    check_advertised,
    check_cohort,
    round_binding,
    round_threshold,
    unb64,
)
from governance import RosterState
from he.errors import HEError
from he.masking import MaskTerm, RoundBinding
from he.recovery import MASK_KEY, Advertised, RecoveryFailed, Revealed, rebuild_correction
from he.ring import SealKit
from he.seeded import masker_for, sum_vectors2
from he.signing import verify
from protocol import (
    AdvertisedKey,
    CohortKeys,
    Manifest,
    PolicySnapshot,
    RoundInfo,
    SecAggRecord,
)

# Subsets of t reveals tried per rebuilt secret when the first ones do not rebuild it (a
# survivor revealed a wrong share): enough to step past a few bad revealers, bounded so a
# hostile record cannot make the node search for long.
MAX_SUBSETS = 64


def _refused(number: int, what: str) -> Refused:
    return Refused("secagg_record", f"round {number}: the secure-aggregation record {what}")


def check_record(
    roster: RosterState, rnd: RoundInfo, manifest: Manifest, seen: CohortKeys | None = None
) -> SecAggRecord:
    """The manifest's v2 record, verified; ``seen``: the cohort keys this bank masked towards."""
    number, record = rnd.number, manifest.secure_aggregation
    if record is None:
        raise _refused(number, "is missing from the manifest of a v2 round")
    if record.consortium != roster.consortium_id:
        raise _refused(number, f"names consortium {record.consortium!r}")
    check_cohort(roster, number, record.cohort)
    threshold = round_threshold(roster, rnd)
    if record.threshold != threshold:
        raise _refused(number, f"has threshold {record.threshold}, not {threshold}")
    check_advertised(roster, number, record.keys, tuple(sorted(record.cohort)))
    if seen is not None and set(record.keys) != set(seen.keys):
        raise _refused(number, "lists other mask keys than the ones this bank masked towards")
    _check_split(number, record, manifest, threshold)
    _check_reveals(roster, number, record, threshold)
    return record


def _check_split(number: int, record: SecAggRecord, manifest: Manifest, threshold: int) -> None:
    u1, survivors, dropped = (
        {k.bank for k in record.keys},
        set(record.survivors),
        set(record.dropped),
    )
    problems = [
        (len(survivors) != len(record.survivors), "names a survivor twice"),
        (survivors != set(manifest.banks), "has survivors other than the manifest's inputs"),
        (not survivors <= u1, "has survivors that advertised no mask key"),
        (
            dropped != u1 - survivors or len(dropped) != len(record.dropped),
            "drops other banks than U1 minus the survivors",
        ),
        (len(survivors) < threshold, f"has fewer than {threshold} survivors"),
    ]
    for failed, what in problems:
        if failed:
            raise _refused(number, what)


def _check_reveals(roster: RosterState, number: int, record: SecAggRecord, threshold: int) -> None:
    survivors, dropped = set(record.survivors), set(record.dropped)
    request = (sorted(record.survivors), sorted(record.dropped))
    seen: set[str] = set()
    for reveal in record.reveals:
        if reveal.bank not in survivors or reveal.bank in seen:
            raise _refused(number, f"holds a reveal of {reveal.bank!r}, not one per survivor")
        seen.add(reveal.bank)
        if (sorted(reveal.survivors), sorted(reveal.dropped)) != request:
            raise _refused(number, f"holds {reveal.bank!r}'s answer to another request")
        if set(reveal.key_shares) != dropped or set(reveal.seed_shares) != survivors:
            raise _refused(number, f"holds {reveal.bank!r}'s reveal of the wrong shares")
        signer = roster.signing_key_of(reveal.bank) or ""
        if not verify(signer, reveal.message(roster.consortium_id, number), reveal.signature):
            raise Refused(
                "reveal_signature",
                f"round {number}: the reveal of {reveal.bank!r} is not signed under its roster key",
            )
    if len(seen) < threshold:
        raise _refused(number, f"holds {len(seen)} reveal(s); {threshold} are needed")


def aggregate_chosen(
    policy: PolicySnapshot, inputs: int, draw: Callable[[int], int] = secrets.randbelow
) -> bool:
    """Whether this node recomputes: always at 0 checkers, else with chance checkers/inputs."""
    if policy.aggregate_checkers == 0:
        return True
    return draw(max(inputs, 1)) < policy.aggregate_checkers


def correction_terms(
    roster: RosterState, rnd: RoundInfo, record: SecAggRecord
) -> tuple[list[MaskTerm], RoundBinding]:
    """The dropped banks' pair masks and the survivors' self-masks, rebuilt and checked.

    The same rebuild as the portal's (``he.recovery.rebuild_correction``); a secret no
    ``t`` reveals rebuild is a refusal of the record.
    """
    binding, threshold = round_binding(roster, rnd), round_threshold(roster, rnd)
    try:
        correction = rebuild_correction(
            advertised={k.bank: _advertised(k) for k in record.keys},
            survivors=record.survivors,
            dropped=record.dropped,
            reveals=[Revealed(r.bank, r.key_shares, r.seed_shares) for r in record.reveals],
            threshold=threshold,
            binding=binding,
            max_subsets=MAX_SUBSETS,
        )
    except RecoveryFailed as exc:
        what = "mask key" if exc.secret == MASK_KEY else "self-mask seed"
        raise _refused(
            rnd.number, f"holds no {threshold} reveals that rebuild {exc.owner!r}'s {what}"
        ) from None
    except HEError as exc:  # a survivor or dropped bank without a usable advertised key
        raise _refused(rnd.number, str(exc)) from None
    # The node only checks the record: whom the portal should blame is not its concern.
    return correction.terms, binding


def _advertised(key: AdvertisedKey) -> Advertised:
    return Advertised(
        unb64(key.mask_public_key, f"the mask key of {key.bank!r}"), key.seed_commitment
    )


def recompute_aggregate(
    kit: SealKit,
    roster: RosterState,
    rnd: RoundInfo,
    manifest: Manifest,
    submissions: dict[str, Path],
    out: Path,
) -> None:
    """Sum the survivors' uploads with the rebuilt correction into ``out``; refuse a mismatch."""
    record = manifest.secure_aggregation
    if record is None:
        raise _refused(rnd.number, "is missing from the manifest of a v2 round")
    terms, binding = correction_terms(roster, rnd, record)
    paths = [submissions[bank] for bank in sorted(record.survivors)]
    try:
        with open(out, "wb") as stream:
            digest = sum_vectors2(paths, kit, stream, masker_for(kit, terms, binding))
    except HEError as exc:
        raise Refused(
            "aggregate_substituted", f"round {rnd.number}: the survivors' uploads do not sum: {exc}"
        ) from None
    if digest != manifest.aggregate_digest:
        raise Refused(
            "aggregate_substituted",
            f"round {rnd.number}: the published aggregate ({manifest.aggregate_digest[:16]}…) is "
            f"not the sum of the survivors' signed uploads with the revealed correction "
            f"({digest[:16]}…)",
        )
