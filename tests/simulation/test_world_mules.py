"""The world's mule_reuse_share knob: schemes use again accounts earlier schemes used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from simulation.cli import main as simulation_main
from simulation.world import generate_world

HOLDOUT = {"cycle": ["1"]}
KNOBS: dict[str, Any] = {
    "days": 28,
    "train_typologies_per_bank": 0,
    "attempts_per_day": 10.0,
    "holdout": HOLDOUT,
}


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name (needs pytest-django)."""


def laundering(out: Path, manifest: dict[str, Any]) -> pd.DataFrame:
    files = [
        pd.read_csv(out / info["file"], dtype=str, keep_default_na=False)
        for info in manifest["banks"].values()
    ]
    rows = pd.concat(files).drop_duplicates()
    return rows[rows["Is Laundering"] == "1"]


def accounts_in_several_attempts(rows: pd.DataFrame) -> float:
    """Share of the accounts on laundering rows that take part in more than one attempt."""
    ends = pd.concat([
        pd.DataFrame({"account": rows["From Bank"] + rows.iloc[:, 2], "attempt": rows["Attempt ID"]}),
        pd.DataFrame({"account": rows["To Bank"] + rows.iloc[:, 4], "attempt": rows["Attempt ID"]}),
    ]).drop_duplicates()  # fmt: skip
    attempts = ends.groupby("account")["attempt"].nunique()
    return float((attempts > 1).mean())


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[float, tuple[Path, dict]]:
    out = {}
    for share in (0.0, 0.6):
        where = tmp_path_factory.mktemp(f"mules-{share}")
        out[share] = (where, generate_world(where, seed=3, mule_reuse_share=share, **KNOBS))
    return out


def test_reused_mules_take_part_in_several_attempts(worlds: dict) -> None:
    fresh = accounts_in_several_attempts(laundering(*worlds[0.0]))
    reused = accounts_in_several_attempts(laundering(*worlds[0.6]))
    print(f"accounts in several attempts: {fresh:.3f} without reuse, {reused:.3f} with")
    assert reused > 2 * fresh, (fresh, reused)


def test_reuse_keeps_a_holdout_typology_away_from_the_other_banks_in_training(
    worlds: dict,
) -> None:
    out, manifest = worlds[0.6]
    for bank, info in manifest["banks"].items():
        frame = pd.read_csv(out / info["file"], dtype=str, keep_default_na=False)
        train = frame[frame["Timestamp"] < manifest["train_end"]]
        seen = int((train["Typology"] == "cycle").sum())
        assert (seen > 0) == (bank in HOLDOUT["cycle"]), (bank, seen)


def test_the_manifest_names_the_knob_only_when_it_is_set(worlds: dict) -> None:
    assert worlds[0.6][1]["params"]["mule_reuse_share"] == 0.6
    # Set to its default it is written, so the file says what was asked for; left out it is
    # not, and the world is the one pinned before the knob existed (test_world.py).
    assert worlds[0.0][1]["params"]["mule_reuse_share"] == 0.0


def test_the_same_seed_and_share_write_the_same_bytes(tmp_path: Path, worlds: dict) -> None:
    first, manifest = worlds[0.6]
    generate_world(tmp_path, seed=3, mule_reuse_share=0.6, **KNOBS)
    for info in manifest["banks"].values():
        assert (tmp_path / info["file"]).read_bytes() == (first / info["file"]).read_bytes()


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("mule_reuse_share=1.5", "mule_reuse_share must be in [0, 1]"),
        ("mule_reuse_share=yes", "'yes' is not a JSON value"),
        ("mules=0.5", "unknown generator parameters ['mules']"),
        ("mule_reuse_share", "expected KEY=VALUE"),
        ('mule_reuse_share="0.5"', "parameter 'mule_reuse_share' must be float"),
    ],
)
def test_synth_refuses_a_bad_override_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pair: str, message: str
) -> None:
    code = simulation_main(["synth", "--out", str(tmp_path / "w"), "--set", pair])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w" / "manifest.json").exists()


def test_synth_sets_the_knob_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = simulation_main(
        ["synth", "--out", str(tmp_path), "--seed", "5", "--set", "mule_reuse_share=0.5"]
    )
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["params"]["mule_reuse_share"] == 0.5
