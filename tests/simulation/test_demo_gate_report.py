"""The demo's report under the gate: it reports the model a node serves, never a rejected one."""

from simulation.demo import _gate, _served


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
