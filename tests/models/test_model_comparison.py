"""The comparison tables: alert-budget hits per typology and the targets' pass/fail."""

from __future__ import annotations

import numpy as np

from models.comparison import BankInfo, comparison_report, score_bank


def test_score_bank_counts_each_typologys_positives_inside_the_alert_list() -> None:
    y = np.array([1, 1, 1] + [0] * 397)
    typ = np.array(["cycle", "cycle", "structuring"] + [""] * 397)
    scores = np.linspace(0, 1, 400)[::-1].copy()  # row 0 scores highest
    scores[1] = 0.0  # one cycle row ranks last
    out = score_bank(y, scores, y, scores, typ, ["cycle", "structuring"])
    # 0.5% of 400 rows = 2 alerts: row 0 (cycle) and row 2 (structuring)
    assert out["typology_hits"] == {"cycle": [1, 2], "structuring": [1, 1]}
    assert out["recall"] == 2 / 3


def test_the_report_pools_holdout_recall_over_the_banks_that_never_saw_the_typology() -> None:
    manifest = {"holdout": {"cycle": ["1"]}, "typologies": ["cycle"],
                "banks": {"1": {}, "2": {}, "3": {}}, "train_banks": {"cycle": ["1"]}}  # fmt: skip

    def metrics(auprc: float, hits: int, positives: int) -> dict:
        return {
            "auprc": auprc,
            "recall": 0.5,
            "f1": 0.5,
            "typology_hits": {"cycle": [hits, positives]},
        }

    results = {
        "local": {"1": metrics(0.5, 9, 9), "2": metrics(0.5, 1, 4), "3": metrics(0.5, 0, 6)},
        "fed_enc": {"1": metrics(0.7, 9, 9), "2": metrics(0.7, 3, 4), "3": metrics(0.7, 3, 6)},
    }
    banks = [BankInfo(b, 100, 10) for b in "123"]
    lines, summary = comparison_report(results, banks, manifest)
    assert summary["holdout_recall"]["cycle"] == {"local": 0.1, "fed_enc": 0.6}  # 1/10, 6/10
    assert [t["pass"] for t in summary["targets"]] == [True, True]  # 0.7 >= 0.65; 0.6 >= 0.2
    assert any(line.startswith("cycle") and "2,3" in line for line in lines)
