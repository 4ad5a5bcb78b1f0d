"""`bank-node serve` for every feature set: PaySim's and card models score online as in batch.

A model of ``paysim-v1`` reads the history fields plus PaySim's type and rule flag; one of
``card-v1`` reads a card's components and keeps no account state. Each is scored through
the service's request path, in process, and compared with the batch path
(`ScoringModel.score_frame`) on the same rows loaded from a file by the node's own loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.data import load_transactions
from bank_node.schemas import TIMESTAMP_FORMAT
from bank_node.scoring_model import load_scoring_model
from bank_node.serve_sets import SERVED_SETS
from models.feature_sets import FEATURE_SETS
from models.features import CARD_COMPONENTS
from simulation.formats import paysim_files, ulb_files
from tests.bank_node.serve_helpers import answer, make_service, post, transaction

HISTORY = ["from_bank", "from_account", "to_bank", "to_account", "receiving_currency",
           "payment_currency", "payment_format", "amount_paid", "amount_received"]  # fmt: skip


def test_every_registered_feature_set_is_served():
    # A new set in models.feature_sets fails here until the service can compute it online.
    assert set(SERVED_SETS) == set(FEATURE_SETS)


def _paysim_sent(row: Any) -> dict[str, Any]:
    sent = {name: getattr(row, name) for name in HISTORY}
    sent["timestamp"] = row.timestamp.strftime(TIMESTAMP_FORMAT)
    sent["transaction_type"] = str(row.transaction_type)
    sent["rule_flag"] = int(row.rule_flag)
    return sent


def _card_sent(row: Any) -> dict[str, Any]:
    sent = {name: float(getattr(row, name)) for name in CARD_COMPONENTS}
    sent["timestamp"] = row.timestamp.isoformat()
    sent["amount_paid"] = float(row.amount_paid)
    return sent


def _streamed(service: Any, frame: Any, sent: Any, batch: int) -> np.ndarray:
    """Scores of ``frame``'s rows sent in timestamp order, ``batch`` per request."""
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    scores = np.empty(len(frame))
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        body = {"transactions": [sent(frame.iloc[i]) for i in chunk]}
        response = post(service, body)
        assert response.status == 200, answer(response)
        scores[chunk] = [r["score"] for r in answer(response)["results"]]
    return scores


@pytest.mark.parametrize(
    ("feature_set", "files", "sent"),
    [
        ("paysim-v1", lambda out: paysim_files(out, n_banks=2), _paysim_sent),
        ("card-v1", lambda out: ulb_files(out / "cards", n_banks=1, rows=600), _card_sent),
    ],
)
def test_a_file_scored_online_equals_the_same_file_scored_in_batch(
    tmp_path: Path, feature_set: str, files: Any, sent: Any
):
    path = files(tmp_path / "data")[0]
    frame = load_transactions(path).iloc[:800].reset_index(drop=True)
    service = make_service(tmp_path, feature_set=feature_set, threshold=0.0)
    model = load_scoring_model(tmp_path / "model")
    assert model.policy.feature_set == feature_set
    streamed = _streamed(service, frame, sent, batch=50)
    assert np.max(np.abs(streamed - model.score_frame(frame))) <= 1e-6
    # Every row alerts at threshold 0, so each answer explains itself in that set's words.
    one = answer(post(service, sent(frame.iloc[-1])))
    assert one["alert"] is True and len(one["reasons"]) == 3
    assert {r["feature"] for r in one["reasons"]} <= set(FEATURE_SETS[feature_set].feature_names)


def test_a_paysim_transaction_names_its_missing_or_contradicting_field(tmp_path: Path):
    service = make_service(tmp_path, feature_set="paysim-v1")
    base = transaction(payment_format="Wire", transaction_type="TRANSFER", rule_flag=0)
    assert post(service, base).status == 200

    missing = {k: v for k, v in base.items() if k != "rule_flag"}
    refused = answer(post(service, missing))
    assert refused["extra"]["field"] == "rule_flag"
    assert "missing field rule_flag" in refused["message"]

    wrong_type = answer(post(service, {**base, "transaction_type": "TRANSFR"}))
    assert wrong_type["extra"]["field"] == "transaction_type"
    assert "did you mean 'TRANSFER'" in wrong_type["message"]

    flag = post(service, {"transactions": [base, {**base, "rule_flag": 2}]})
    assert flag.status == 422
    assert answer(flag)["extra"] == {"field": "transactions[1].rule_flag", "index": 1}

    contradiction = post(service, {**base, "transaction_type": "CASH_OUT"})
    assert contradiction.status == 422
    assert answer(contradiction)["extra"]["field"] == "payment_format"
    assert "'Cash'" in answer(contradiction)["message"]


def test_a_card_transaction_needs_its_components_and_no_account(tmp_path: Path):
    service = make_service(tmp_path, feature_set="card-v1")
    card = {"timestamp": "2013-09-01T10:00:05", "amount_paid": 12.5}
    card |= {name: 0.1 * i for i, name in enumerate(CARD_COMPONENTS)}
    assert post(service, card).status == 200

    no_v17 = answer(post(service, {k: v for k, v in card.items() if k != "v17"}))
    assert no_v17["extra"]["field"] == "v17"
    negative = post(service, {**card, "v3": -2.75})
    assert negative.status == 200  # components are centred: negative is normal
    not_finite = answer(post(service, {**card, "v3": "NaN"}))
    assert not_finite["extra"]["field"] == "v3"
    account = answer(post(service, {**card, "from_account": "A1"}))
    assert account["extra"]["field"] == "from_account"
    assert "unknown field 'from_account'" in account["message"]
    # Card scoring reads no history, so nothing was written to the account state.
    assert service.store.pruned_at() is None


def test_an_aml_model_still_refuses_paysim_fields(tmp_path: Path):
    service = make_service(tmp_path)
    refused = answer(post(service, transaction(transaction_type="TRANSFER")))
    assert refused["extra"]["field"] == "transaction_type"
