"""Portal personas (one per role) and a consortium with history to look at."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

REP_PASSWORD = "representative-password-1"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The default hasher takes ~0.4 s per user by design; these tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def bank_rep(db: Any, bank_alpha: Any) -> Any:
    """Ravi represents bank alpha and nobody else."""
    from django.contrib.auth.models import User

    from consortium.portal.models import BankRepresentative

    user = User.objects.create_user("ravi", password=REP_PASSWORD)
    BankRepresentative.objects.create(user=user, bank=bank_alpha.bank, created_by="test")
    return user


@pytest.fixture
def roleless(db: Any) -> Any:
    """Nora has an account but no portal role."""
    from django.contrib.auth.models import User

    return User.objects.create_user("nora", password="no-role-password-1")


@pytest.fixture
def client_for(db: Any) -> Any:
    """``client_for(user)``: a test client signed in as ``user`` (or anonymous for None)."""

    def make(user: Any | None) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return make


def seed_history(
    *, banks: int, rounds: int, per_round: int, policy: Any, epoch: Any, epsilon: bool = False
) -> tuple[list[Any], list[Any]]:
    """Bulk-insert banks and a history of rounds (no ciphertexts, no audit events).

    Every 10th round failed; the others were published with ``per_round`` submissions and
    as many metric reports, rotating through the banks. Nothing here goes through the
    services: it is only rows for pages to read, not a history the domain produced.
    """
    from consortium.members.models import Bank
    from consortium.rounds.models import MetricReport, Round, RoundState, Submission

    Bank.objects.bulk_create(
        Bank(
            slug=f"bank-{i:03d}",
            name=f"Bank {i:03d}",
            credential_prefix=f"p{i:011d}",
            credential_hash="0" * 64,
            signing_public_key="A" * 43 + "=",
        )
        for i in range(banks)
    )
    all_banks = list(Bank.objects.order_by("slug"))
    start = timezone.now() - timedelta(days=rounds)
    snapshot = policy.snapshot()  # the same for every round: building it 1,000 times costs seconds
    Round.objects.bulk_create(
        Round(
            number=n,
            policy=policy,
            policy_snapshot=snapshot,
            key_epoch=epoch,
            vector_length=policy.vector_length,
            state=RoundState.FAILED if n % 10 == 0 else RoundState.PUBLISHED,
            failure_reason="only 1 of the 3 required updates arrived by the deadline"
            if n % 10 == 0
            else "",
            opened_at=start + timedelta(days=n),
            deadline_at=start + timedelta(days=n, minutes=30),
            aggregating_at=start + timedelta(days=n, minutes=20),
            closed_at=start + timedelta(days=n, minutes=21),
            aggregate_size=123_456,
            aggregate_digest="a" * 64,
            manifest={"round": n, "inputs": []},
        )
        for n in range(1, rounds + 1)
    )
    all_rounds = list(Round.objects.order_by("number"))
    subs, reports = [], []
    for rnd in all_rounds:
        for k in range(per_round):
            bank = all_banks[(rnd.number * per_round + k) % len(all_banks)]
            subs.append(
                Submission(
                    round=rnd,
                    bank=bank,
                    digest=f"{rnd.number:032d}{k:032d}",
                    signature="c2ln",
                    signing_public_key=bank.signing_public_key,
                    size_bytes=65_600,
                    blob=f"r{rnd.number}/{bank.slug}",
                    # What the bank signed with the upload: the ε pages and charts show.
                    epsilon_spent=0.1 * rnd.number if epsilon else None,
                    budget_left=True if epsilon else None,
                )
            )
            if rnd.state == RoundState.PUBLISHED:
                metrics = {"auprc": 0.2 + 0.5 * (1 - 1 / (1 + rnd.number / 50)) + 0.01 * k}
                if epsilon:
                    metrics["epsilon"] = 0.1 * rnd.number
                reports.append(MetricReport(round=rnd, bank=bank, metrics=metrics))
    Submission.objects.bulk_create(subs, batch_size=2000)
    MetricReport.objects.bulk_create(reports, batch_size=2000)
    analyze()
    return all_banks, all_rounds


def analyze() -> None:
    """Give the query planner statistics of the rows just bulk-inserted.

    A live database has them from autovacuum, which never sees a test's uncommitted rows:
    without them PostgreSQL planned the round page's ε query over 167,000 submissions as if
    the tables were nearly empty, and one page took minutes. ANALYZE inside the test's
    transaction counts that transaction's own rows; SQLite has ANALYZE too.
    """
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def submit(ckks: Any, rnd: Any, persona: Any, *, seed: int = 0, signer: Any = None) -> Any:
    """Upload a real encrypted update through the REST API, as the bank's node would."""
    from tests.conftest import encrypted_update, upload_headers

    body, _ = encrypted_update(ckks, rnd.vector_length, seed=seed)
    return Client().put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(persona, rnd.number, body, signer=signer),
    )


def report(rnd: Any, persona: Any, metrics: dict[str, float]) -> Any:
    """Report metrics for a published round through the REST API."""
    return Client().post(
        f"/api/v1/rounds/{rnd.number}/metrics",
        data={"metrics": metrics},
        content_type="application/json",
        **persona.auth(),
    )


def key_epoch_row() -> Any:
    """A key epoch row for pages to name, without generating a CKKS context (seconds)."""
    from consortium.rounds.models import KeyEpoch

    return KeyEpoch.objects.create(
        number=1, fingerprint="f" * 64, ckks_params={}, public_context=b"", created_by="test"
    )


def round_in_flight_row(policy: Any, epoch: Any, number: int) -> Any:
    """An open round of ``policy`` at ``epoch`` with half an hour to go (a row, no services)."""
    from consortium.rounds.models import Round, RoundState

    now = timezone.now()
    return Round.objects.create(
        number=number,
        policy=policy,
        policy_snapshot=policy.snapshot(),
        key_epoch=epoch,
        vector_length=policy.vector_length,
        state=RoundState.OPEN,
        opened_at=now,
        deadline_at=now + timedelta(minutes=30),
    )


def seed_crowded_rounds(
    *, published: Any, open_round: Any, banks: list[Any], took_part: int
) -> None:
    """Give ``published`` an upload, a report and a manifest input from each of the first
    ``took_part`` banks besides those it has, and ``open_round`` uploads from as many:
    the rest of the banks are missing from it (bulk inserts, no services)."""
    from consortium.rounds.models import MetricReport, Submission

    have = set(published.submissions.values_list("bank_id", flat=True))
    joining = [b for b in banks[:took_part] if b.pk not in have]

    def upload(rnd: Any, bank: Any, i: int) -> Any:
        return Submission(
            round=rnd,
            bank=bank,
            digest=f"{rnd.number:032d}{1000 + i:032d}",
            signature="c2ln",
            signing_public_key=bank.signing_public_key,
            size_bytes=65_600 + i,
            blob=f"r{rnd.number}/{bank.slug}",
            epsilon_spent=0.1 * rnd.number,
            budget_left=True,
        )

    Submission.objects.bulk_create(
        [upload(published, b, i) for i, b in enumerate(joining)]
        + [upload(open_round, b, i) for i, b in enumerate(banks[:took_part])],
        batch_size=2000,
    )
    MetricReport.objects.bulk_create(
        MetricReport(round=published, bank=b, metrics={"auprc": 0.3 + 0.002 * i, "loss": 0.1})
        for i, b in enumerate(joining)
    )
    inputs = published.submissions.select_related("bank").order_by("bank__slug")
    published.manifest = {
        "round": published.number,
        "key_epoch": published.key_epoch.fingerprint,
        "aggregate_digest": "a" * 64,
        "inputs": [{"bank": s.bank.slug, "digest": s.digest, "signature": "c2ln"} for s in inputs],
    }
    published.save(update_fields=["manifest"])
    analyze()


def policy_row(**fields: Any) -> Any:
    """An active policy row for pages to read, made without ``policy_create``: that service
    builds the model with torch to size its update, which costs a cold import (seconds).
    Its sizes are made up; nothing here trains or encrypts."""
    from consortium.rounds.models import RoundPolicy

    defaults: dict[str, Any] = {
        "name": "default",
        "version": 1,
        "created_by": "test",
        "active": True,
        "min_banks": 3,
        "max_rounds": 3,
        "normalize_features": False,
        "model_spec": {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        "secure_aggregation": "v1",
        "n_features": 10,
        "vector_length": 10 * 8 + 8 + 8 + 1 + 2,
    }
    return RoundPolicy.objects.create(**{**defaults, **fields})
