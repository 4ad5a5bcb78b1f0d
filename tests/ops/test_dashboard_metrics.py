"""The gauges behind the dashboards' expected-vs-minimum panel, the privacy-budget alert and
the blob-volume alert: read from the database (and the blob filesystem) at scrape time."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Max

from consortium.members.models import BankStatus
from consortium.members.services import bank_set_status
from consortium.metrics import round_gauges
from consortium.rounds.models import (
    MetricReport,
    Round,
    RoundKind,
    RoundPolicy,
    RoundState,
    Submission,
)
from governance import RosterError
from tests.ops.test_portal_metrics import scrape

pytestmark = pytest.mark.django_db


def test_the_round_in_flight_expects_every_active_member_and_needs_the_policys_minimum(
    client, open_round, bank_delta
):
    got = scrape(client)
    assert got[("consortium_round_in_flight_expected_updates", ())] == 4
    assert got[("consortium_round_in_flight_min_updates", ())] == 3
    bank_set_status(bank=bank_delta.bank, status=BankStatus.SUSPENDED, actor="test", reason="t")
    assert scrape(client)[("consortium_round_in_flight_expected_updates", ())] == 3


def test_a_v2_round_expects_its_cohort(client, open_round):
    Round.objects.filter(pk=open_round.pk).update(cohort=["alpha", "beta"], threshold=2)
    assert scrape(client)[("consortium_round_in_flight_expected_updates", ())] == 2


def test_without_a_round_in_flight_the_expectations_are_absent(client, bank_alpha):
    names = {name for name, _ in scrape(client)}
    assert "consortium_round_in_flight_expected_updates" not in names
    assert "consortium_round_in_flight_min_updates" not in names


def _signed(rnd: Round, persona: Any, epsilon: float | None) -> None:
    Submission.objects.create(
        round=rnd,
        bank=persona.bank,
        digest="0" * 64,
        signature="s",
        signing_public_key="k",
        size_bytes=1,
        blob="x",
        epsilon_spent=epsilon,
    )


def test_each_bank_reports_the_epsilon_of_its_newest_signed_upload_and_the_budget(
    client, open_round, policy, bank_alpha, bank_beta, bank_gamma
):
    older = Round.objects.create(
        **{
            f.attname: getattr(open_round, f.attname)
            for f in Round._meta.concrete_fields
            if f.attname not in {"id", "number", "state"}
        },
        number=Round.objects.aggregate(n=Max("number"))["n"] - 1 or 0,
        state=RoundState.PUBLISHED,
    )
    _signed(older, bank_alpha, 5.0)
    _signed(open_round, bank_alpha, 6.5)  # the newest round's figure wins
    _signed(older, bank_beta, 2.0)
    _signed(open_round, bank_gamma, None)  # no DP figure: no series
    RoundPolicy.objects.filter(pk=policy.pk).update(dp_target_epsilon=8.0)
    got = scrape(client)
    assert got[("consortium_bank_privacy_epsilon", (("bank", "alpha"),))] == 6.5
    assert got[("consortium_bank_privacy_epsilon", (("bank", "beta"),))] == 2.0
    assert ("consortium_bank_privacy_epsilon", (("bank", "gamma"),)) not in got
    assert got[("consortium_privacy_epsilon_budget", ())] == 8.0


def test_without_a_dp_policy_there_is_no_budget(client, policy):
    assert ("consortium_privacy_epsilon_budget", ()) not in scrape(client)


def test_the_blob_volume_reports_free_and_total_bytes(client, settings, tmp_path):
    settings.BLOB_DIR = tmp_path
    got = scrape(client)
    free = got[("consortium_blob_storage_free_bytes", ())]
    assert 0 < free <= got[("consortium_blob_storage_capacity_bytes", ())]


def test_an_unreadable_blob_directory_leaves_the_blob_gauges_out(client, settings, tmp_path):
    settings.BLOB_DIR = tmp_path / "missing"
    names = {name for name, _ in scrape(client)}
    assert "consortium_blob_storage_free_bytes" not in names
    assert ("consortium_database_up", ()) in scrape(client)


def test_a_roster_that_does_not_verify_leaves_the_expectations_out_not_the_scrape(
    client, open_round, monkeypatch
):
    def broken() -> int:
        raise RosterError("a stored version's signature does not verify")

    monkeypatch.setattr(round_gauges.roster, "roster_min_banks", broken)
    got = scrape(client)
    assert got[("consortium_database_up", ())] == 1
    assert ("consortium_round_in_flight_min_updates", ()) not in got
    assert ("consortium_round_in_flight_submissions", ()) in got


def test_the_banks_still_missing_from_the_round_in_flight_are_named_until_they_send(
    client, open_round, bank_alpha, bank_beta, bank_gamma
):
    missing = {
        labels
        for name, labels in scrape(client)
        if name == "consortium_round_in_flight_missing_bank"
    }
    assert missing == {(("bank", "alpha"),), (("bank", "beta"),), (("bank", "gamma"),)}
    _signed(open_round, bank_beta, None)
    got = scrape(client)
    assert ("consortium_round_in_flight_missing_bank", (("bank", "beta"),)) not in got
    assert got[("consortium_round_in_flight_missing_bank", (("bank", "gamma"),))] == 1


def test_a_v2_round_names_only_its_cohorts_missing_banks(client, open_round, bank_alpha):
    Round.objects.filter(pk=open_round.pk).update(cohort=["alpha", "beta"], threshold=2)
    _signed(open_round, bank_alpha, None)
    missing = {
        labels
        for name, labels in scrape(client)
        if name == "consortium_round_in_flight_missing_bank"
    }
    assert missing == {(("bank", "beta"),)}


def test_quality_is_each_banks_reported_auprc_for_the_newest_reported_training_round(
    client, open_round, bank_alpha, bank_beta
):
    fields = {
        f.attname: getattr(open_round, f.attname)
        for f in Round._meta.concrete_fields
        if f.attname not in {"id", "number", "state", "kind"}
    }
    old, new, stats = (
        Round.objects.create(**fields, number=90 + i, state=RoundState.PUBLISHED, kind=kind)
        for i, kind in enumerate([RoundKind.TRAINING, RoundKind.TRAINING, RoundKind.STATISTICS])
    )
    assert scrape(client).get(("consortium_reported_auprc_round", ())) is None  # no report yet
    MetricReport.objects.create(round=old, bank=bank_alpha.bank, metrics={"auprc": 0.2})
    MetricReport.objects.create(round=new, bank=bank_alpha.bank, metrics={"auprc": 0.41})
    MetricReport.objects.create(round=new, bank=bank_beta.bank, metrics={"recall_at_1pct": 0.5})
    MetricReport.objects.create(round=stats, bank=bank_beta.bank, metrics={"auprc": 0.9})
    got = scrape(client)
    assert got[("consortium_reported_auprc_round", ())] == new.number
    assert got[("consortium_bank_reported_auprc", (("bank", "alpha"),))] == 0.41
    assert ("consortium_bank_reported_auprc", (("bank", "beta"),)) not in got  # no AUPRC in it
