"""Round info, manifests and receipts: strict parsing and faithful round trips."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol import Manifest, PrivacyClaim, ProtocolError, RoundInfo, RoundPage, UpdateReceipt
from tests.protocol.messages import manifest_dict, policy_dict, round_dict


def test_an_open_round_parses_with_its_policy_and_no_manifest_yet():
    rnd = RoundInfo.from_dict(round_dict())
    assert rnd.number == 4 and rnd.state == "open" and rnd.is_training
    assert rnd.policy.max_rounds == 10 and rnd.manifest is None
    assert rnd.opened_at == datetime(2026, 12, 1, 15, 0, 0, 123456, tzinfo=UTC)
    assert rnd.to_dict() == round_dict(
        submitted_by_you=None,
        privacy=[],
        disputed=False,
        candidate_round=None,
        gate_round=None,
        gate_decision=None,
    )


def test_a_published_round_carries_its_manifest_and_round_trips():
    data = round_dict(state="published", manifest=manifest_dict(), closed_at="2026-12-01T15:20:00Z")
    rnd = RoundInfo.from_dict(data)
    assert rnd.manifest is not None and rnd.manifest.banks == ("alpha", "beta")
    assert RoundInfo.from_dict(rnd.to_dict()) == rnd
    assert rnd.to_dict()["manifest"] == manifest_dict()


def test_the_round_detail_s_own_fields_are_optional_and_typed():
    detail = round_dict(
        submitted_by_you="01" * 32,
        privacy=[{"bank": "alpha", "epsilon_spent": 1.5, "budget_left": True}],
    )
    rnd = RoundInfo.from_dict(detail)
    assert rnd.submitted_by_you == "01" * 32 and rnd.privacy[0].epsilon_spent == 1.5
    assert RoundInfo.from_dict(round_dict()).privacy == ()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({k: v for k, v in round_dict().items() if k != "number"}, "number"),
        (round_dict(number="4"), "number"),
        (round_dict(state="closed"), "state"),
        (round_dict(kind="secret"), "kind"),
        (round_dict(opened_at="yesterday"), "opened_at"),
        (round_dict(opened_at="2026-12-01T15:00:00"), "opened_at"),
        (round_dict(policy=policy_dict(batch_size="big")), "policy.batch_size"),
        (
            round_dict(policy={k: v for k, v in policy_dict().items() if k != "dp_delta"}),
            "policy.dp_delta",
        ),
        (round_dict(policy=None), "policy"),
        (round_dict(manifest={"round": 4}), "manifest.key_epoch"),
        (
            round_dict(manifest=manifest_dict(inputs=[{"bank": "alpha"}])),
            "manifest.inputs[0].digest",
        ),
        (round_dict(surprise=1), "surprise"),
    ],
    ids=[
        "missing",
        "string-number",
        "unknown-state",
        "unknown-kind",
        "not-a-date",
        "naive-date",
        "policy-type",
        "policy-missing",
        "policy-null",
        "manifest-partial",
        "manifest-input",
        "extra",
    ],
)
def test_a_malformed_round_is_a_protocol_error_naming_the_field(data, field):
    with pytest.raises(ProtocolError) as caught:
        RoundInfo.from_dict(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_a_page_of_rounds_parses_every_round():
    page = RoundPage.from_dict(
        {
            "count": 2,
            "next": None,
            "previous": None,
            "results": [round_dict(), round_dict(number=3)],
        }
    )
    assert [r.number for r in page.results] == [4, 3]
    with pytest.raises(ProtocolError) as caught:
        RoundPage.from_dict({"count": 1, "next": None, "previous": None, "results": [{}]})
    assert caught.value.field == "results[0].number"


def test_a_manifest_round_trips_and_lists_its_banks():
    manifest = Manifest.from_dict(manifest_dict())
    assert manifest.to_dict() == manifest_dict()
    assert manifest.banks == ("alpha", "beta")


def test_an_update_receipt_writes_times_as_the_api_does():
    when = datetime(2026, 12, 1, 15, 0, 1, tzinfo=UTC)
    receipt = UpdateReceipt(
        round=4, bank="alpha", digest="ab" * 32, size_bytes=10, received_at=when
    )
    assert receipt.to_dict()["received_at"] == "2026-12-01T15:00:01Z"
    assert UpdateReceipt.from_dict(receipt.to_dict()) == receipt


@pytest.mark.parametrize(
    ("claim", "headers"),
    [
        (PrivacyClaim(), {}),
        (
            PrivacyClaim(epsilon=1.25, budget_left=False),
            {"X-Privacy-Epsilon": "1.25", "X-Privacy-Budget-Left": "false"},
        ),
        (
            PrivacyClaim(epsilon=3, budget_left=True),
            {"X-Privacy-Epsilon": "3.0", "X-Privacy-Budget-Left": "true"},
        ),
    ],
)
def test_a_privacy_claim_travels_as_the_upload_headers(claim, headers):
    assert claim.headers() == headers


def test_a_manifest_written_before_inputs_carried_signatures_still_parses():
    old = manifest_dict(inputs=[{"bank": "alpha", "digest": "01" * 32}])
    manifest = Manifest.from_dict(old)
    assert manifest.inputs[0].signature == "" and manifest.inputs[0].epsilon is None
