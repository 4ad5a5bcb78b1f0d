"""The comparison tables: alert-budget hits per typology and the targets' pass/fail."""

from __future__ import annotations

import numpy as np
import pytest

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


def _metrics(auprc: float, hits: int, positives: int) -> dict:
    return {"auprc": auprc, "recall": 0.5, "f1": 0.5, "typology_hits": {"cycle": [hits, positives]}}


MANIFEST = {"holdout": {"cycle": ["1"]}, "typologies": ["cycle"],
            "banks": {"1": {}, "2": {}, "3": {}}, "train_banks": {"cycle": ["1"]}}  # fmt: skip
BANKS = [BankInfo(b, 100, 10) for b in "123"]


def test_the_report_pools_holdout_recall_over_the_banks_that_never_saw_the_typology() -> None:
    results = {
        "local": {"1": _metrics(0.5, 9, 9), "2": _metrics(0.5, 1, 4), "3": _metrics(0.5, 0, 6)},
        "fed_enc": {"1": _metrics(0.7, 9, 9), "2": _metrics(0.7, 3, 4), "3": _metrics(0.7, 3, 6)},
    }
    lines, summary = comparison_report(results, BANKS, MANIFEST)
    assert summary["holdout_recall"]["cycle"] == {"local": 0.1, "fed_enc": 0.6}  # 1/10, 6/10
    assert [t["pass"] for t in summary["targets"]] == [True]  # 0.7 >= 1.3 x 0.5; no central
    assert any(line.startswith("cycle") and "2,3" in line for line in lines)


@pytest.mark.parametrize(
    ("fed_auprc", "fed_hits", "passes"),
    [
        # 0.7 >= 0.95 x 0.72 = 0.684 and >= 1.3 x 0.5; recall 6/10 >= 0.8 x 7/10 = 0.56
        (0.7, (3, 3), [True, True, True]),
        # 0.68 < 0.684 but >= 0.65; recall 5/10 < 0.56
        (0.68, (2, 3), [False, True, False]),
        # 0.64 < 1.3 x 0.5 as well
        (0.64, (3, 3), [False, False, True]),
    ],
)
def test_the_targets_are_issue_15s_against_centralised_and_local_only(
    fed_auprc: float, fed_hits: tuple[int, int], passes: list[bool]
) -> None:
    hits = {"local": (9, 1, 0), "central": (9, 2, 5), "fed_enc": (9, *fed_hits)}
    auprc = {"local": 0.5, "central": 0.72, "fed_enc": fed_auprc}
    results = {
        c: {b: _metrics(auprc[c], h, n) for b, h, n in zip("123", hits[c], (9, 4, 6), strict=True)}
        for c in hits
    }
    _, summary = comparison_report(results, BANKS, MANIFEST)
    texts = [t["target"] for t in summary["targets"]]
    assert [t["pass"] for t in summary["targets"]] == passes, texts
    assert "0.95 x centralised 0.720" in texts[0]
    assert "1.3 x local-only 0.500" in texts[1]
    assert texts[2].startswith("holdout typology cycle") and "0.8 x centralised 0.700" in texts[2]


def test_the_ckks_gap_target_passes_within_0_002_and_fails_beyond() -> None:
    def results(enc: float) -> dict:
        return {"fed_plain": {b: _metrics(0.7, 0, 0) for b in "123"},
                "fed_enc": {b: _metrics(enc, 0, 0) for b in "123"}}  # fmt: skip

    for enc, ok in ((0.7019, True), (0.7021, False)):
        _, summary = comparison_report(results(enc), BANKS, MANIFEST)
        gap = [t for t in summary["targets"] if t["target"].startswith("|CKKS")]
        assert [t["pass"] for t in gap] == [ok], enc


def test_the_twin_is_judged_on_its_own_line_and_kept_out_of_the_tables() -> None:
    """Two trajectories 0.004 apart fail the CKKS gap; the run's own twin 0 apart passes it."""
    auprc = {"fed_plain": 0.696, "fed_enc": 0.7, "fed_twin": 0.7}
    results = {c: {b: _metrics(a, 0, 0) for b in "123"} for c, a in auprc.items()}
    lines, summary = comparison_report(results, BANKS, MANIFEST)
    gaps = {
        t["target"].split(" mean")[0]: t["pass"] for t in summary["targets"] if "|" in t["target"]
    }
    assert gaps == {"|CKKS - plaintext|": False, "|CKKS - its plaintext twin|": True}
    assert summary["mean_auprc"]["fed_twin"] == pytest.approx(0.7)
    assert not any("twin" in line for line in lines if not line.startswith("  ["))


@pytest.mark.parametrize(("xb", "ok"), [(0.72, True), (0.719, False)])
def test_the_cross_bank_column_is_held_to_the_centralised_model_without_its_features(
    xb: float, ok: bool
) -> None:
    auprc = {"central": 0.72, "fed_plain": 0.6, "fed_xb": xb}
    results = {c: {b: _metrics(a, 0, 0) for b in "123"} for c, a in auprc.items()}
    lines, summary = comparison_report(results, BANKS, MANIFEST)
    cross = [t for t in summary["targets"] if t["target"].startswith("fed + cross-bank")]
    assert [t["pass"] for t in cross] == [ok]
    assert f"{xb:.3f} >= centralised without them 0.720" in cross[0]["target"]
    header = next(line for line in lines if line.startswith(" bank"))
    assert header.index("fed plain") < header.index("fed + cross-bank")


def test_a_column_title_longer_than_the_default_width_keeps_the_table_aligned() -> None:
    results = {c: {b: _metrics(0.5, 0, 0) for b in "123"} for c in ("fed_enc", "personal")}
    lines, _ = comparison_report(results, BANKS, MANIFEST)
    header = next(line for line in lines if line.startswith(" bank"))
    first_row = lines[lines.index(header) + 1]
    assert header.endswith("personalised") and len(header) == len(first_row)
