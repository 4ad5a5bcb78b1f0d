"""`bank-node models ...`, `score` with the promoted model, and `bank-node cases export`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from bank_node.cli import main
from bank_node.registry_node import NodeRegistry
from bank_node.state import save_global_model
from tests.bank_node.registry_world import (
    TinyBank,
    node_config,
    node_toml,
    published,
    tiny_bank,
    ungated_policy,
)
from tests.standin_portal import standin_portal

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def bank() -> TinyBank:
    return tiny_bank()


@pytest.fixture
def node(tmp_path: Path, bank: TinyBank) -> Path:
    """A node that evaluated round 1 (trained: promoted) and round 2 (noise: held)."""
    state = tmp_path / "state"
    bank.normalization_into(state)
    registry = NodeRegistry(node_config(state, bank.data_file), None)
    for number, model in ((1, bank.trained), (2, bank.noise)):
        rnd = published(number, ungated_policy())
        registry.evaluated(rnd, model.weights, model.threshold, model.metrics, None)
        save_global_model(state, rnd, model.weights, model.threshold)  # as the gate does
    return node_toml(tmp_path, bank.data_file)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_list_shows_every_version_and_which_is_promoted(node, capsys):
    code, out, _ = _run(capsys, "models", "list", "--config", str(node))
    header, first, second = out.strip().splitlines()
    assert code == 0
    assert header.split() == ["version", "round", "promoted", "local", "AUPRC", "consortium",
                              "AUPRC", "held"]  # fmt: skip
    assert first.split()[:3] == ["round-1", "1", "*"]
    assert second.split()[:2] == ["round-2", "2"] and second.split()[-1] == "local_drop"


def test_models_show_prints_the_passport(node, capsys):
    code, out, _ = _run(capsys, "models", "show", "round-2", "--config", str(node))
    passport = json.loads(out)
    assert code == 0 and passport["round"] == 2 and passport["promoted"] is False
    assert passport["held"] == "local_drop"


@pytest.mark.parametrize("verb", ["show", "promote"])
def test_an_unknown_version_exits_2_naming_it_and_the_valid_ones(node, capsys, verb):
    code, _, err = _run(capsys, "models", verb, "round-9", "--config", str(node))
    assert code == 2
    assert "no model version 'round-9'" in err and "the versions are: round-1, round-2" in err


def test_promote_refuses_a_dropped_version_with_exit_1_unless_forced(node, capsys):
    code, _, err = _run(capsys, "models", "promote", "round-2", "--config", str(node))
    assert code == 1 and "refused" in err and "--force promotes it anyway" in err
    code, out, _ = _run(capsys, "models", "promote", "round-2", "--force", "--config", str(node))
    assert code == 0 and "promoted round-2" in out
    code, out, _ = _run(capsys, "models", "rollback", "--config", str(node))
    assert code == 0 and "round-1 is the promoted model again" in out
    code, _, err = _run(capsys, "models", "rollback", "--config", str(node))
    assert code == 2 and "nothing to roll back to" in err


def test_rollback_pins_the_version_and_list_and_show_say_by_whom_until_a_promote(node, capsys):
    _run(capsys, "models", "promote", "round-2", "--force", "--config", str(node))
    code, out, _ = _run(capsys, "models", "rollback", "--by", "olivia", "--config", str(node))
    assert code == 0 and "pinned" in out
    _, listed, _ = _run(capsys, "models", "list", "--config", str(node))
    assert "round-1 pinned by rollback at " in listed and ", by olivia" in listed
    _, shown, _ = _run(capsys, "models", "show", "round-1", "--config", str(node))
    pinned = json.loads(shown)["pinned"]
    assert pinned["version"] == "round-1" and pinned["by"] == "olivia"
    assert pinned["text"].startswith("round-1 pinned by rollback at ")
    _, other, _ = _run(capsys, "models", "show", "round-2", "--config", str(node))
    assert json.loads(other)["pinned"] is None

    _run(capsys, "models", "promote", "round-1", "--config", str(node))
    _, listed, _ = _run(capsys, "models", "list", "--config", str(node))
    _, shown, _ = _run(capsys, "models", "show", "round-1", "--config", str(node))
    assert "pinned" not in listed and json.loads(shown)["pinned"] is None


def test_promote_tells_the_portal_what_the_node_serves_when_the_bank_opted_in(node, capsys):
    seen: list[tuple[str, str, bytes]] = []

    def answer(method: str, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        seen.append((method, path, body))
        return 200, b'{"round": 2, "version": "round-2"}'

    with standin_portal(answer) as client:
        text = node.read_text().replace("http://127.0.0.1:9", client.base_url.rstrip("/"))
        node.write_text(text + "report_served_model = true\n")
        (node.parent / "credential").write_text("cbk_test")
        argv = ("models", "promote", "round-2", "--force", "--config", str(node))
        code, _, _ = _run(capsys, *argv)
    assert code == 0
    assert seen == [("PUT", "/api/v1/rounds/2/served-model", b'{"version": "round-2"}')]


def test_score_without_model_uses_the_promoted_version_not_the_newest(node, bank, capsys):
    out = node.parent / "scored.csv"
    argv = ("score", "--config", str(node), "--input", str(bank.data_file), "--out", str(out))
    code, printed, _ = _run(capsys, *argv)
    assert code == 0
    assert json.loads(printed.strip().splitlines()[-1])["global_model_round"] == 1
    _run(capsys, "models", "promote", "round-2", "--force", "--config", str(node))
    code, printed, _ = _run(capsys, *argv)
    assert json.loads(printed.strip().splitlines()[-1])["global_model_round"] == 2
    with open(out, newline="") as handle:
        assert {row["model_version"] for row in csv.DictReader(handle)} == {"round-2"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cases_export_takes_the_version_each_row_names_not_the_one_promoted_since(
    node, bank, capsys, suffix
):
    scored = node.parent / f"scored{suffix}"
    argv = ("score", "--config", str(node), "--input", str(bank.data_file), "--out", str(scored))
    code, printed, _ = _run(capsys, *argv)
    assert code == 0 and json.loads(printed.strip().splitlines()[-1])["model_version"] == "round-1"
    _run(capsys, "models", "promote", "round-2", "--force", "--config", str(node))

    out = node.parent / "cases.json"
    code, _ = _export(capsys, node, scored, out)
    document = json.loads(out.read_text())
    assert code == 0 and document["model"]["version"] == "round-1"
    assert document["cases"] and {c["model_version"] for c in document["cases"]} == {"round-1"}
    assert document["cases"][0]["case_id"].startswith("round-1-line-")

    code, err = _export(capsys, node, scored, out, "--version", "round-2")
    assert code == 2 and f"--version round-2, but {scored} was scored by round-1" in err


def test_cases_export_refuses_a_file_scored_by_two_versions(node, capsys):
    scored = node.parent / "scored.csv"
    scored.write_text("line,score,alert,model_version\n2,0.9,1,round-1\n3,0.8,1,round-2\n")
    code, err = _export(capsys, node, scored, node.parent / "cases.json")
    assert code == 2 and "scored by more than one model version (round-1, round-2)" in err


def test_a_pointer_to_a_missing_version_makes_score_exit_2_naming_it(node, bank, capsys):
    (node.parent / "state" / "models" / "promoted").write_text("round-5\n")
    out = node.parent / "scored.csv"
    argv = ("score", "--config", str(node), "--input", str(bank.data_file), "--out", str(out))
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "names version 'round-5'" in err


def _scored(path: Path, rows: list[tuple[int, float, int, str]], *, reasons: bool) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "score", "alert", *(["reasons"] if reasons else [])])
        for line, score, alert, why in rows:
            writer.writerow([line, f"{score:.6f}", alert, *([why] if reasons else [])])
    return path


ROWS = [(2, 0.1, 0, ""), (3, 0.91, 1, "amount far above the account's usual; new payee"),
        (5, 0.75, 1, "many transfers in an hour")]  # fmt: skip


def _export(capsys: Any, node: Path, scored: Path, out: Path, *extra: str) -> tuple[int, str]:
    argv = ("cases", "export", "--config", str(node), "--from", str(scored), "--out", str(out))
    code, _, err = _run(capsys, *argv, *extra)
    return code, err


def test_cases_export_json_carries_each_alert_its_reasons_and_the_model_passport(
    node, bank, capsys
):
    scored = _scored(node.parent / "scored.csv", ROWS, reasons=True)
    out = node.parent / "cases.json"
    code, _ = _export(capsys, node, scored, out, "--input", str(bank.data_file))
    document = json.loads(out.read_text())
    assert code == 0
    assert [c["line"] for c in document["cases"]] == [3, 5]  # the alerts only
    assert document["cases"][0]["reasons"] == "amount far above the account's usual; new payee"
    assert document["cases"][0]["case_id"] == "round-1-line-3"
    with open(bank.data_file, newline="") as handle:
        second_row = list(csv.DictReader(handle))[1]  # line 3 of the file
    assert document["cases"][0]["transaction"] == second_row
    model = document["model"]
    rnd = published(1, ungated_policy())
    assert model["version"] == "round-1" and model["policy"]["digest"] == rnd.policy.digest()
    assert model["aggregate_digest"] == rnd.aggregate_digest and model["epsilon"] == 1.5
    assert document["bank"] == "alpha" and len(document["scored_sha256"]) == 64


def test_cases_export_csv_has_one_row_per_alert_and_empty_reasons_without_the_column(node, capsys):
    scored = _scored(node.parent / "scored.csv", ROWS, reasons=False)
    out = node.parent / "cases.csv"
    code, _ = _export(capsys, node, scored, out, "--version", "round-2")
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0 and [r["line"] for r in rows] == ["3", "5"]
    assert {r["reasons"] for r in rows} == {""}
    assert {r["model_version"] for r in rows} == {"round-2"}
    assert rows[0]["input_digests"] == f"alpha:{'a1' * 32};beta:{'b2' * 32}"
    assert rows[0]["policy_name"] == ungated_policy().name


@pytest.mark.parametrize(
    ("content", "out_name", "message"),
    [
        ("line,score\n2,0.5\n", "cases.json", "no column alert"),
        ("line,score,alert\nx,0.5,1\n", "cases.json", "line 2: line and score must be numbers"),
        ("line,score,alert\n2,0.5,1\n", "cases.txt", "write cases.json or cases.csv"),
    ],
)
def test_a_bad_scored_file_or_output_name_exits_2_with_the_reason(
    node, capsys, content, out_name, message
):
    scored = node.parent / "scored.csv"
    scored.write_text(content)
    code, err = _export(capsys, node, scored, node.parent / out_name)
    assert code == 2 and message in err
