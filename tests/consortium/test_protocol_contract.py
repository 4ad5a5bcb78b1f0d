"""What the portal sends a bank parses as the declared protocol messages."""

from __future__ import annotations

import pytest

from consortium.rounds.models import Round, RoundPolicy, RoundState
from consortium.rounds.serializers import PolicySerializer
from protocol import (
    POLICY_FIELDS,
    BankInfo,
    KeyEpochInfo,
    MetricsReceipt,
    PolicySnapshot,
    RoundInfo,
    RoundPage,
    UpdateReceipt,
    default_ckks_params,
    default_model_spec,
)
from tests.conftest import encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


def test_a_policy_snapshot_is_the_protocol_s_and_stored_unchanged(open_round, policy):
    snapshot = policy.as_snapshot()
    assert isinstance(snapshot, PolicySnapshot)
    assert open_round.policy_snapshot == snapshot.to_dict() == policy.snapshot()
    # PostgreSQL's jsonb does not keep key order; the digest banks sign is over the
    # canonical (sorted) encoding, so what must survive storage is every field and the digest.
    assert set(open_round.policy_snapshot) == set(POLICY_FIELDS)
    assert PolicySnapshot.from_dict(open_round.policy_snapshot).digest() == snapshot.digest()
    assert snapshot.dp_enabled is policy.dp_enabled is False


def test_a_new_policy_takes_its_model_and_ckks_defaults_from_protocol():
    fresh = RoundPolicy()
    assert fresh.model_spec == default_model_spec()
    assert fresh.ckks_params == default_ckks_params()


def test_the_policy_api_names_every_snapshot_field():
    names = set(PolicySerializer().fields)
    assert set(POLICY_FIELDS) <= names
    assert "max_consecutive_failures" in names


def test_the_round_answers_parse_as_round_info(client, open_round, bank_alpha):
    current = client.get("/api/v1/rounds/current", **bank_alpha.auth())
    rnd = RoundInfo.from_dict(current.json())
    assert rnd.number == open_round.number and rnd.policy.max_rounds == 3
    detail = client.get(f"/api/v1/rounds/{open_round.number}", **bank_alpha.auth())
    assert RoundInfo.from_dict(detail.json()).submitted_by_you is None
    page = RoundPage.from_dict(client.get("/api/v1/rounds/", **bank_alpha.auth()).json())
    assert [r.number for r in page.results] == [open_round.number]


def test_the_bank_and_key_epoch_answers_parse(client, epoch, bank_alpha):
    me = BankInfo.from_dict(client.get("/api/v1/banks/me", **bank_alpha.auth()).json())
    assert me.slug == bank_alpha.slug
    current = client.get("/api/v1/key-epochs/current", **bank_alpha.auth())
    assert KeyEpochInfo.from_dict(current.json()).fingerprint == epoch.fingerprint


def test_an_upload_answer_and_a_metrics_answer_parse_as_receipts(
    client, ckks, open_round, bank_alpha
):
    body, _ = encrypted_update(ckks, open_round.vector_length)
    response = client.put(
        f"/api/v1/rounds/{open_round.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(bank_alpha, open_round.number, body),
    )
    assert response.status_code == 201, response.json()
    receipt = UpdateReceipt.from_dict(response.json())
    assert receipt.bank == bank_alpha.slug and receipt.size_bytes == len(body)
    # Marked published directly: the aggregation itself is not what this test is about.
    Round.objects.filter(pk=open_round.pk).update(state=RoundState.PUBLISHED)
    metrics = client.post(
        f"/api/v1/rounds/{open_round.number}/metrics",
        data={"metrics": {"auprc": 0.5}},
        content_type="application/json",
        **bank_alpha.auth(),
    )
    assert metrics.status_code == 200, metrics.json()
    assert MetricsReceipt.from_dict(metrics.json()) == MetricsReceipt(
        round=open_round.number, metrics={"auprc": 0.5}, self_reported=True
    )
