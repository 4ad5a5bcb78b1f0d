"""The report says what each round reveals: the statistics round's exact moments are not "DP on"."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from audit.report import Selection
from consortium.audit_api.services import audit_report_export
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.services import policy_create, scheduler_tick
from tests.conftest import encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


def _upload_all(
    ckks: Any, banks: list[Any], *, epsilon: str | None = None, budget_left: str | None = None
) -> int:
    rnd = round_in_flight()
    assert rnd is not None
    for seed, persona in enumerate(banks):
        body, _ = encrypted_update(ckks, rnd.vector_length, seed=seed)
        response = Client().put(
            f"/api/v1/rounds/{rnd.number}/update",
            data=body,
            content_type="application/octet-stream",
            **upload_headers(persona, rnd.number, body, epsilon=epsilon, budget_left=budget_left),
        )
        assert response.status_code == 201, response.content
    scheduler_tick()
    return int(rnd.number)


@pytest.fixture
def dp_history(ckks: Any, epoch: Any, bank_alpha: Any, bank_beta: Any, bank_gamma: Any) -> None:
    """A DP policy with a target and no fixed multiplier: a statistics round, a training round."""
    policy_create(
        name="private",
        actor="test",
        activate=True,
        min_banks=3,
        deadline=timedelta(minutes=10),
        dp_target_epsilon=8.0,
        normalize_features=True,
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        secure_aggregation="v1",  # sends v1 containers
    )
    scheduler_tick()
    banks = [bank_alpha, bank_beta, bank_gamma]
    assert _upload_all(ckks, banks) == 1
    assert _upload_all(ckks, banks, epsilon="5.48", budget_left="true") == 2


def _pdf_text(content: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(content)
    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())


def test_the_json_report_says_the_statistics_round_releases_exact_moments_without_dp(dp_history):
    export = audit_report_export(selection=Selection(rounds=(1, 2)), fmt="json", actor="test")
    stats, training = (r["privacy"] for r in export.report["rounds"])
    assert stats["differential_privacy"] == "off" and stats["dp_settings"] == {}
    assert stats["epsilon_budget"] is None and stats["epsilon_spent"] == {}
    assert stats["release"].startswith("exact sums of feature moments")
    assert "no noise is added" in stats["release"]
    assert training["differential_privacy"] == "on" and training["epsilon_budget"] == 8.0
    assert training["epsilon_spent"] == {"alpha": 5.48, "beta": 5.48, "gamma": 5.48}
    assert training["release"].startswith("model weights trained noised by DP-SGD")


def test_the_pdf_never_marks_the_statistics_round_dp_on_nor_prints_a_none_multiplier(
    dp_history, tmp_path
):
    export = audit_report_export(selection=Selection(rounds=(1, 2)), fmt="pdf", actor="test")
    text = _pdf_text(export.content, tmp_path)
    assert "differential privacy off: exact sums of feature moments" in text
    assert "= None" not in text
    assert "noise multiplier derived by each bank from the target" in text
    assert "alpha: 5.480, beta: 5.480, gamma: 5.480 (budget 8 per bank)" in text
    assert text.count("differential privacy ON") == 1  # the training round only
