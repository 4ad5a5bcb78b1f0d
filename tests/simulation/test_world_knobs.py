"""The synthetic world's new typologies and non-IID knobs do what they say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from simulation.world import TYPOLOGIES, generate_world

HOLDOUT = {"cycle": ["1"], "account_takeover": ["2"]}
# Every typology allowed everywhere except the holdouts; more attempts than tiny so that
# every bank meets every typology in the held-out period.
KNOBS: dict[str, Any] = {"days": 28, "train_typologies_per_bank": 0, "attempts_per_day": 10.0}


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name, which needs pytest-django's
    ``settings``; these tests touch no Django and also run with ``-p no:django``."""


def read(out: Path, manifest: dict[str, Any]) -> dict[str, pd.DataFrame]:
    return {
        bank: pd.read_csv(out / info["file"], dtype=str, keep_default_na=False)
        for bank, info in manifest["banks"].items()
    }


@pytest.fixture(scope="module")
def holdout_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("holdout")
    manifest = generate_world(out, seed=1, holdout=HOLDOUT, typology_alpha=0.5, **KNOBS)
    return manifest, read(out, manifest)


def periods(frame: pd.DataFrame, manifest: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    in_train = frame["Timestamp"] < manifest["train_end"]
    return frame[in_train], frame[~in_train]


def test_holdout_typologies_occur_in_training_only_at_the_named_banks(
    holdout_world: tuple[dict, dict],
) -> None:
    manifest, files = holdout_world
    for typology, named in HOLDOUT.items():
        for bank, frame in files.items():
            train, _ = periods(frame, manifest)
            seen = (train["Typology"] == typology).sum()
            assert (seen > 0) == (bank in named), (typology, bank, seen)
        assert manifest["train_banks"][typology] == named
    assert manifest["holdout"] == HOLDOUT


def test_holdout_typologies_occur_at_every_bank_in_the_held_out_period(
    holdout_world: tuple[dict, dict],
) -> None:
    manifest, files = holdout_world
    for typology in HOLDOUT:
        for bank, frame in files.items():
            _, test = periods(frame, manifest)
            assert (test["Typology"] == typology).sum() > 0, (typology, bank)


def test_account_takeover_moves_a_customers_money_to_a_mule_who_cashes_it_out(
    holdout_world: tuple[dict, dict],
) -> None:
    _, files = holdout_world
    rows = pd.concat(files.values()).drop_duplicates()
    rows = rows[rows["Typology"] == "account_takeover"]
    assert len(rows) > 0 and (rows["Is Laundering"] == "1").all()
    whole = 0
    for _, attempt in rows.sort_values("Timestamp", kind="stable").groupby("Attempt ID"):
        if len(attempt) < 2:
            continue  # the mule banks outside the consortium: its cash-out is not visible
        transfer, cash_outs = attempt.iloc[0], attempt.iloc[1:]
        mule = transfer["To Bank"] + transfer.iloc[4]
        assert transfer["Payment Format"] in ("Wire", "ACH")
        assert ((cash_outs["From Bank"] + cash_outs.iloc[:, 2]) == mule).all()
        assert cash_outs["Payment Format"].isin(["Cash", "Bitcoin"]).all()
        whole += 1
    assert whole >= 3


def test_gather_scatter_collects_from_several_accounts_into_one_that_pays_several(
    holdout_world: tuple[dict, dict],
) -> None:
    _, files = holdout_world
    rows = pd.concat(files.values()).drop_duplicates()
    rows = rows[rows["Typology"] == "gather_scatter"]
    assert len(rows) > 0 and (rows["Is Laundering"] == "1").all()
    shapes = []
    for _, attempt in rows.groupby("Attempt ID"):
        src = attempt["From Bank"] + attempt.iloc[:, 2]
        dst = attempt["To Bank"] + attempt.iloc[:, 4]
        hub = dst.value_counts().index[0]
        shapes.append(((dst == hub).sum(), (src == hub).sum()))
    assert max(n_in for n_in, _ in shapes) >= 3 and max(n_out for _, n_out in shapes) >= 3
    assert any(n_in >= 3 and n_out >= 3 for n_in, n_out in shapes)


def test_every_typology_is_present_and_labelled_in_the_tiny_world(tmp_path: Path) -> None:
    manifest = generate_world(tmp_path, seed=0)
    assert set(manifest["typologies"]) == set(TYPOLOGIES) >= {"gather_scatter", "account_takeover"}
    assert all(manifest["totals"]["attempts"][t] > 0 for t in TYPOLOGIES)
    rows = pd.concat(read(tmp_path, manifest).values())
    assert ((rows["Typology"] != "") == (rows["Is Laundering"] == "1")).all()


def top_share(manifest: dict) -> float:
    """Mean over banks of the largest typology's share of the bank's training laundering."""
    shares = []
    for info in manifest["banks"].values():
        counts = np.array(list(info["typology_rows_train"].values()), float)
        shares.append(counts.max() / counts.sum())
    return float(np.mean(shares))


def test_a_small_dirichlet_alpha_concentrates_each_banks_typology_mix(tmp_path: Path) -> None:
    knobs = {**KNOBS, "days": 21, "cross_bank_share": 0.1}  # few legs elsewhere blur the mix
    peaked = generate_world(tmp_path / "a", seed=2, typology_alpha=0.1, **knobs)
    even = generate_world(tmp_path / "b", seed=2, typology_alpha=100.0, **knobs)
    mix_peak = np.mean([max(i["train_mix"].values()) for i in peaked["banks"].values()])
    mix_even = np.mean([max(i["train_mix"].values()) for i in even["banks"].values()])
    assert mix_peak > 0.5 and mix_even < 0.25
    assert top_share(peaked) > top_share(even) + 0.15


def test_the_zipf_exponent_sets_how_unequal_bank_sizes_are(tmp_path: Path) -> None:
    equal = generate_world(tmp_path / "a", seed=0, days=14, size_skew=0.0)
    skewed = generate_world(tmp_path / "b", seed=0, days=14, size_skew=1.2)

    def spread(manifest: dict) -> float:
        rows = [info["rows"] for info in manifest["banks"].values()]
        return max(rows) / min(rows)

    # Segments (corporate, private) and counterparties keep equal-sized banks a little apart.
    assert spread(equal) < 1.6 and spread(skewed) > 2 * spread(equal)


def test_a_base_rate_spread_gives_banks_different_laundering_rates(tmp_path: Path) -> None:
    knobs = {**KNOBS, "days": 21}
    flat = generate_world(tmp_path / "a", seed=0, **knobs)
    varied = generate_world(tmp_path / "b", seed=0, base_rate_spread=1.5, **knobs)
    assert {i["rate_factor"] for i in flat["banks"].values()} == {1.0}
    banks = varied["banks"].values()
    low = min(banks, key=lambda i: i["rate_factor"])
    high = max(banks, key=lambda i: i["rate_factor"])
    assert high["rate_factor"] > 3 * low["rate_factor"]
    assert high["laundering_rows"] / high["rows"] > 2 * low["laundering_rows"] / low["rows"]


def test_the_same_seed_and_knobs_write_byte_identical_files(tmp_path: Path) -> None:
    knobs = {**KNOBS, "days": 14, "holdout": HOLDOUT, "typology_alpha": 0.3,
             "base_rate_spread": 0.5}  # fmt: skip
    generate_world(tmp_path / "a", seed=5, **knobs)
    generate_world(tmp_path / "b", seed=5, **knobs)
    first = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert first == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}


@pytest.mark.parametrize(
    ("holdout", "message"),
    [({"smurfing": ["1"]}, "unknown"), ({"cycle": ["5"]}, "not member banks"),
     ({"cycle": ["x"]}, "not member banks")],
)  # fmt: skip
def test_a_holdout_naming_an_unknown_typology_or_bank_is_refused(
    tmp_path: Path, holdout: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate_world(tmp_path, holdout=holdout)


def test_presets_name_their_bank_count_and_small_holds_out_two_typologies() -> None:
    from simulation.world import PRESETS

    assert PRESETS["tiny"]["banks"] == 4 and PRESETS["small"]["banks"] == 20
    assert len(PRESETS["small"]["holdout"]) >= 2 and PRESETS["hi-small"]["banks"] >= 20
