"""Which stored ciphertexts the retention policy may delete (reads only)."""

from __future__ import annotations

from dataclasses import dataclass

from consortium.rounds import storage
from consortium.rounds.models import IN_FLIGHT_STATES, Round, RoundPolicy, RoundState, Submission
from consortium.rounds.selectors import (
    key_epoch_current,
    round_base_for,
    round_numbers_published,
    round_stats_for,
)

# A closed round's ciphertexts are only ever read again by a round that builds on it.
CLOSED_STATES = (RoundState.PUBLISHED, RoundState.FAILED)


@dataclass(frozen=True)
class RoundBlobs:
    """One round's ciphertexts that are still stored: relative paths and their sizes."""

    number: int
    blobs: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        return sum(size for _, size in self.blobs)


@dataclass(frozen=True)
class RetentionPlan:
    """What one retention run deletes, and what it keeps that it otherwise would."""

    keep_published: int
    # The oldest of the newest ``keep_published`` published rounds (None: fewer exist).
    oldest_kept: int | None
    # Older rounds kept because a kept or current round builds on them.
    kept_as_base: tuple[int, ...]
    rounds: tuple[RoundBlobs, ...]

    @property
    def blob_count(self) -> int:
        return sum(len(r.blobs) for r in self.rounds)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.rounds)


def _current_bases() -> set[int]:
    """Rounds the scheduler would build on now: each active policy's base and statistics."""
    epoch = key_epoch_current()
    found: set[int] = set()
    for policy in RoundPolicy.objects.filter(active=True):
        found.add(getattr(round_base_for(policy), "pk", 0))
        if epoch is not None:
            found.add(getattr(round_stats_for(policy, epoch), "pk", 0))
    return found - {0}


def _referenced_by(rounds: list[Round]) -> set[int]:
    """The base, statistics and candidate rounds of ``rounds``."""
    refs = {r.base_round_id for r in rounds} | {r.stats_round_id for r in rounds}
    return {pk for pk in refs | {r.candidate_round_id for r in rounds} if pk is not None}


def _stored(relpaths: list[str]) -> tuple[tuple[str, int], ...]:
    """The paths (and sizes) of those blobs that are still on the store."""
    found = []
    for relpath in relpaths:
        size = storage.blob_size(relpath)
        if size is not None:
            found.append((relpath, size))
    return tuple(found)


def _round_blobs(rnd: Round, uploads: dict[int, list[str]]) -> RoundBlobs:
    relpaths = [*uploads.get(rnd.pk, []), *([rnd.aggregate_blob] if rnd.aggregate_blob else [])]
    return RoundBlobs(rnd.number, _stored(relpaths))


def retention_plan(*, keep_published: int) -> RetentionPlan:
    """Ciphertexts of closed rounds older than the newest ``keep_published`` published ones.

    A round that a kept round, a round in flight or the scheduler's next round builds on
    (base, statistics or candidate round) is kept, whatever its age: nodes still download
    its aggregate. Blobs already gone are not listed, so a run after an interrupted one
    lists only what is left.
    """
    newest = round_numbers_published(up_to=None, limit=keep_published)
    if len(newest) < keep_published:
        return RetentionPlan(keep_published, None, (), ())
    oldest_kept = newest[-1]
    # Only the columns needed: at 1,000 rounds of 200 banks the manifests alone are large.
    live = (
        Round.objects.filter(number__gte=oldest_kept)
        | Round.objects.filter(state__in=IN_FLIGHT_STATES)
    ).only("base_round", "stats_round", "candidate_round")
    protected = _referenced_by(list(live)) | _current_bases()
    old = list(
        Round.objects.filter(number__lt=oldest_kept, state__in=CLOSED_STATES)
        .only("number", "aggregate_blob")
        .order_by("number")
    )
    candidates = [r for r in old if r.pk not in protected]
    uploads: dict[int, list[str]] = {}
    rows = Submission.objects.filter(round__in=candidates).values_list("round_id", "blob")
    for round_pk, relpath in rows:
        uploads.setdefault(round_pk, []).append(relpath)
    rounds = [_round_blobs(r, uploads) for r in candidates]
    kept = tuple(r.number for r in old if r.pk in protected)
    return RetentionPlan(keep_published, oldest_kept, kept, tuple(r for r in rounds if r.blobs))
