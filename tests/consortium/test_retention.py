"""The retention policy deletes old rounds' ciphertexts, keeps what rounds still build on,
records each run in the audit trail, and refuses a bad count with a message."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.selectors import audit_chain_verify, audit_event_list
from consortium.rounds import storage
from consortium.rounds.models import Round, RoundKind, RoundState, Submission
from consortium.rounds.services.retention import blobs_retain
from tests.conftest import Persona

pytestmark = pytest.mark.django_db


def _blob(relpath: str, size: int = 64) -> str:
    """A stored blob of ``size`` zero bytes, in whichever store the settings choose."""
    staged = storage.temp_path()
    staged.write_bytes(b"\0" * size)
    storage.commit(staged, relpath)
    return relpath


def make_round(
    number: int,
    state: str,
    policy: Any,
    epoch: Any,
    banks: list[Persona],
    **fields: Any,
) -> Round:
    """A closed (or in-flight) round with one stored upload per bank and, once published,
    a stored aggregate: rows and files only, no cryptography."""
    now = timezone.now() - timedelta(days=100 - number)
    published = state == RoundState.PUBLISHED
    rnd = Round.objects.create(
        number=number,
        vector_length=policy.vector_length,
        policy=policy,
        policy_snapshot={"min_banks": 3, "model_spec": policy.model_spec},
        key_epoch=epoch,
        state=state,
        opened_at=now,
        deadline_at=now + timedelta(minutes=10),
        aggregate_blob=_blob(storage.aggregate_relpath(number), 100) if published else "",
        **fields,
    )
    for persona in banks:
        relpath = _blob(storage.upload_relpath(number, persona.slug, f"{number:064d}"))
        Submission.objects.create(
            round=rnd,
            bank=persona.bank,
            digest=f"{number:064d}",
            signature="sig",
            signing_public_key="key",
            size_bytes=64,
            blob=relpath,
        )
    return rnd


@pytest.fixture
def banks(bank_alpha: Persona, bank_beta: Persona, bank_gamma: Persona) -> list[Persona]:
    return [bank_alpha, bank_beta, bank_gamma]


@pytest.fixture
def history(epoch: Any, policy: Any, banks: list[Persona]) -> list[Round]:
    """Rounds 1-6: 1, 2, 4, 5, 6 published (each on the previous), 3 failed."""
    made: list[Round] = []
    for number in range(1, 7):
        state = RoundState.FAILED if number == 3 else RoundState.PUBLISHED
        base = next((r for r in reversed(made) if r.state == RoundState.PUBLISHED), None)
        made.append(make_round(number, state, policy, epoch, banks, base_round=base))
    return made


def stored(rnd: Round) -> list[str]:
    paths = [s.blob for s in rnd.submissions.all()] + [rnd.aggregate_blob]
    return [p for p in paths if p and storage.blob_size(p) is not None]


def retention_events() -> list[Any]:
    return list(audit_event_list(action="blobs.retained"))


def test_rounds_older_than_the_newest_published_ones_lose_their_ciphertexts(history):
    plan = blobs_retain(keep_published=2, actor="test")
    # Round 5 and 6 are kept; 4 is the base round 5 builds on; 1-3 go (3 failed: uploads only).
    assert [r.number for r in plan.rounds] == [1, 2, 3]
    assert plan.kept_as_base == (4,)
    assert [len(stored(r)) for r in history] == [0, 0, 0, 4, 4, 4]
    assert plan.blob_count == 4 + 4 + 3 and plan.size == 2 * (3 * 64 + 100) + 3 * 64


def test_each_run_that_deletes_writes_one_audit_event_naming_the_rounds(history):
    blobs_retain(keep_published=2, actor="cli:ops:blobs_retain")
    (event,) = retention_events()
    assert event.actor == "cli:ops:blobs_retain"
    assert event.data["oldest_kept_round"] == 5 and event.data["kept_as_base"] == [4]
    assert event.data["rounds"] == [[1, 4, 292], [2, 4, 292], [3, 3, 192]]
    assert (event.data["blobs"], event.data["bytes"]) == (11, 776)
    assert audit_chain_verify().ok


def test_a_second_run_finds_nothing_left_and_records_nothing(history):
    blobs_retain(keep_published=2, actor="test")
    again = blobs_retain(keep_published=2, actor="test")
    assert again.rounds == () and len(retention_events()) == 1


def test_a_dry_run_lists_the_rounds_and_deletes_nothing(history):
    plan = blobs_retain(keep_published=2, actor="test", dry_run=True)
    assert [r.number for r in plan.rounds] == [1, 2, 3]
    assert all(len(stored(r)) >= 3 for r in history) and retention_events() == []


def test_with_fewer_published_rounds_than_kept_nothing_is_deleted(history):
    plan = blobs_retain(keep_published=6, actor="test")
    assert plan.oldest_kept is None and plan.rounds == ()
    assert all(stored(r) for r in history) and retention_events() == []


def test_the_statistics_round_and_base_of_the_round_in_flight_are_kept(
    history, policy, epoch, banks
):
    stats = history[0]
    Round.objects.filter(pk=stats.pk).update(kind=RoundKind.STATISTICS)
    make_round(
        7, RoundState.OPEN, policy, epoch, banks[:1], base_round=history[1], stats_round=stats
    )
    plan = blobs_retain(keep_published=1, actor="test")
    assert plan.oldest_kept == 6
    assert set(plan.kept_as_base) == {1, 2, 5}  # stats and base of 7, base of 6
    assert [r.number for r in plan.rounds] == [3, 4]


def test_the_last_training_aggregate_stays_while_newer_rounds_are_statistics(
    history, policy, epoch, banks
):
    # Rounds 5 and 6 become statistics rounds: round 4 is the base the next training
    # round would start from, although it is older than the kept rounds.
    Round.objects.filter(number__in=[5, 6]).update(kind=RoundKind.STATISTICS, base_round=None)
    plan = blobs_retain(keep_published=1, actor="test")
    assert 4 in plan.kept_as_base and 4 not in [r.number for r in plan.rounds]
    assert stored(Round.objects.get(number=4))


def test_a_deleted_aggregate_is_a_410_that_names_the_retention_policy(client, history, banks):
    blobs_retain(keep_published=2, actor="test")
    response = client.get("/api/v1/rounds/2/aggregate", **banks[0].auth())
    assert response.status_code == 410
    assert "retention policy" in response.json()["message"]


def test_the_command_deletes_and_says_what_it_deleted(history):
    out = StringIO()
    call_command("blobs_retain", "--keep-published=2", "--actor=cronjob", stdout=out)
    assert "deleted 11 blobs (776 bytes) of rounds 1, 2, 3" in out.getvalue()
    assert "kept as a base: (4,)" in out.getvalue()
    assert retention_events()[0].actor == "cli:cronjob:blobs_retain"


def test_the_command_dry_run_says_what_it_would_delete(history):
    out = StringIO()
    call_command("blobs_retain", "--keep-published=2", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete 11 blobs")
    assert retention_events() == []


@pytest.mark.parametrize(
    ("value", "message"), [("0", "must be at least 1"), ("many", "must be a whole number")]
)
def test_the_command_refuses_a_count_that_is_not_a_positive_number(history, value, message):
    with pytest.raises(CommandError, match=message):
        call_command("blobs_retain", f"--keep-published={value}")
    assert all(stored(r) for r in history)
