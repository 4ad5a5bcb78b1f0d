"""The demo's report under the gate: it reports the model a node serves, never a rejected one."""

from simulation.demo_results import gate_words as _gate
from simulation.demo_results import served_round as _served


def test_the_reported_model_is_the_newest_adopted_not_the_newest_evaluated():
    state = {
        "evaluated": {"2": {}, "4": {}, "6": {}},
        "gated": ["2", "4", "6"],
        "verdicts": {
            "2": {"decision": "adopt"},
            "4": {"decision": "adopt"},
            "6": {"decision": "reject"},
        },
    }
    assert _served(state) == "4"


def test_an_ungated_run_reports_its_newest_evaluated_round():
    assert _served({"evaluated": {"2": {}, "3": {}}}) == "3"


def test_rounds_show_their_gate_in_words():
    assert _gate({"gate_round": 3, "gate_decision": "reject"}) == "rejected"
    assert _gate({"gate_round": 3, "gate_decision": None}) == "pending"
    assert _gate({"candidate_round": 2}) == "gates round 2"
    assert _gate({"gate_round": None}) == ""


def _figures(auprc: float, recall: float) -> dict[str, float]:
    return {"auprc": auprc, "recall_at_0.5pct": recall, "base_rate": 0.01}


def test_the_table_shows_local_federated_and_personalised_with_means_and_the_gain():
    from simulation.demo_results import table

    finals = {"a": _figures(0.6, 0.5), "b": _figures(0.8, 0.7)}
    local = {"a": _figures(0.3, 0.2), "b": _figures(0.5, 0.4)}
    personal = {
        "a": {"personalised": _figures(0.7, 0.6)},
        "b": {"personalised": _figures(0.9, 0.8)},
    }
    head, row_a, _, mean = table(finals, local, personal, "auprc")
    assert head.split() == [
        "bank",
        "base",
        "rate",
        "local-only",
        "federated",
        "personalised",
        "gain",
    ]
    assert row_a.split() == ["a", "0.0100", "0.300", "0.600", "0.700", "2.00x"]
    assert mean.split() == ["mean", "0.400", "0.700", "0.800", "1.75x"]
    # Another figure has no base rate and no gain; without baselines, no local-only column.
    head, _, row_b, mean = table(finals, {}, personal, "recall_at_0.5pct")
    assert head.split() == ["bank", "federated", "personalised"]
    assert row_b.split() == ["b", "0.700", "0.800"]
    assert mean.split() == ["mean", "0.600", "0.700"]
