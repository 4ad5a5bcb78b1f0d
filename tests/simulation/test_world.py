"""The synthetic world: format, determinism, manifest truthfulness, non-IID typologies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bank_node.data import load_ibm_csv
from simulation.world import (
    EXTRA_HEADER,
    FORMATS,
    IBM_HEADER,
    PRESETS,
    TYPOLOGIES,
    UNITS_PER_USD,
    generate_world,
)

SMALL: dict[str, Any] = {
    "days": 14
}  # enough for determinism checks, quicker than the full tiny world


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name, which needs pytest-django's
    ``settings``; these tests touch no Django and also run with ``-p no:django``."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("world")
    return out, generate_world(out, preset="tiny", seed=0)


@pytest.fixture(scope="module")
def files(world: tuple[Path, dict[str, Any]]) -> dict[str, pd.DataFrame]:
    out, manifest = world
    return {
        bank: pd.read_csv(out / info["file"], dtype=str, keep_default_na=False)
        for bank, info in manifest["banks"].items()
    }


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_the_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    generate_world(tmp_path / "a", seed=3, **SMALL)
    generate_world(tmp_path / "b", seed=3, **SMALL)
    assert contents(tmp_path / "a") == contents(tmp_path / "b")
    expected = {"manifest.json", *(f"bank_{i}.csv" for i in range(1, 5))}
    assert set(contents(tmp_path / "a")) == expected


def test_another_seed_writes_different_transactions(tmp_path: Path) -> None:
    generate_world(tmp_path / "a", seed=3, **SMALL)
    generate_world(tmp_path / "b", seed=4, **SMALL)
    first, second = contents(tmp_path / "a"), contents(tmp_path / "b")
    assert all(first[name] != second[name] for name in first)


# SHA-256 of the tiny preset with seed 0, as bank_node/synth.py wrote it before the generator
# moved to simulation/world/: a refactoring must not change a single byte of the world.
TINY_SEED_0_SHA256 = {
    "bank_1.csv": "452aba9e584f0792f6b51f9b68494f5b4bcc238af1780f1209f4f530707189e6",
    "bank_2.csv": "c0bda40aa1d2e6408d68b8063f1b81fea78d08f110de66e57c93610e78f8d62b",
    "bank_3.csv": "5a593d89b2ceb30daeddf9323aa82adac1494a3d9ccfe43db348183f68b44e3c",
    "bank_4.csv": "bc988d3e146f0a2a726d5abcbc111392a99feb36d9778b6eff12dbb320c8bf45",
    "manifest.json": "fb7e318822fca75d458ce617e446095be96ccef2dce72ac35d52a6ae61687c82",
}


def test_the_tiny_preset_with_seed_0_is_byte_identical_to_the_pinned_world(
    world: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = world
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in contents(out).items()}
    assert digests == TINY_SEED_0_SHA256


def test_files_use_the_ibm_columns_in_order_then_the_extras(world: tuple[Path, dict]) -> None:
    out, manifest = world
    header = (out / manifest["banks"]["1"]["file"]).read_text().split("\n", 1)[0]
    assert header.split(",") == IBM_HEADER + EXTRA_HEADER
    assert IBM_HEADER == [
        "Timestamp", "From Bank", "Account", "To Bank", "Account", "Amount Received",
        "Receiving Currency", "Amount Paid", "Payment Currency", "Payment Format", "Is Laundering",
    ]  # fmt: skip


def test_values_follow_the_ibm_conventions(files: dict[str, pd.DataFrame]) -> None:
    for frame in files.values():
        assert frame["Timestamp"].str.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}").all()
        assert frame["Payment Format"].isin(FORMATS).all()
        assert frame["Payment Currency"].isin(list(UNITS_PER_USD)).all()
        assert frame["Receiving Currency"].isin(list(UNITS_PER_USD)).all()
        assert frame["Is Laundering"].isin(["0", "1"]).all()
        assert (frame["Typology"] != "").eq(frame["Is Laundering"] == "1").all()
        assert frame["Timestamp"].is_monotonic_increasing


def test_every_file_loads_and_holds_only_rows_touching_its_bank(world: tuple[Path, dict]) -> None:
    out, manifest = world
    for bank, info in manifest["banks"].items():
        frame = load_ibm_csv(out / info["file"])
        assert ((frame["from_bank"] == bank) | (frame["to_bank"] == bank)).all()
        assert len(frame) == info["rows"]


def test_the_manifest_counts_match_the_files(
    world: tuple[Path, dict], files: dict[str, pd.DataFrame]
) -> None:
    out, manifest = world
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for bank, frame in files.items():
        info = manifest["banks"][bank]
        in_train = frame["Timestamp"] < manifest["train_end"]
        assert info["rows"] == len(frame)
        assert info["laundering_rows"] == (frame["Is Laundering"] == "1").sum()
        for period, rows in (("typology_rows", frame), ("typology_rows_train", frame[in_train]),
                             ("typology_rows_holdout", frame[~in_train])):  # fmt: skip
            counts = rows["Typology"].value_counts()
            assert info[period] == {t: int(counts.get(t, 0)) for t in TYPOLOGIES}


def test_tiny_banks_are_skewed_in_size_with_a_low_but_testable_laundering_rate(
    world: tuple[Path, dict],
) -> None:
    _, manifest = world
    rows = [info["rows"] for info in manifest["banks"].values()]
    assert all(12_000 <= n <= 35_000 for n in rows)
    assert max(rows) > 1.4 * min(rows)
    rate = sum(i["laundering_rows"] for i in manifest["banks"].values()) / sum(rows)
    assert 0.005 <= rate <= 0.02


def test_each_bank_trains_without_some_typologies_it_meets_later(world: tuple[Path, dict]) -> None:
    _, manifest = world
    seen_in_training = set()
    for info in manifest["banks"].values():
        trained = {t for t, n in info["typology_rows_train"].items() if n}
        assert trained <= set(info["train_typologies"])
        assert len(set(TYPOLOGIES) - trained) >= 2
        assert any(info["typology_rows_holdout"][t] for t in set(TYPOLOGIES) - trained)
        seen_in_training |= trained
    assert seen_in_training == set(TYPOLOGIES)


def test_structuring_stays_just_under_the_reporting_threshold(
    files: dict[str, pd.DataFrame],
) -> None:
    rows = pd.concat(files.values())
    paid = rows.loc[rows["Typology"] == "structuring", "Amount Paid"].astype(float)
    assert len(paid) > 0 and paid.between(9_000, 9_999.99).all()


def test_a_fan_out_attempt_sends_from_one_account_to_at_least_five(
    files: dict[str, pd.DataFrame],
) -> None:
    # The home bank of a fan-out sees every leg, so it sees the whole fan.
    rows = pd.concat(files.values()).drop_duplicates()
    fans = rows[rows["Typology"] == "fan_out"].groupby("Attempt ID")
    senders = fans.apply(lambda g: (g["From Bank"] + g.iloc[:, 2]).nunique())
    receivers = fans.apply(lambda g: (g["To Bank"] + g.iloc[:, 4]).nunique())
    assert (senders == 1).all() and receivers.max() >= 5


def test_presets_are_a_dict_and_unknown_names_or_parameters_are_refused(tmp_path: Path) -> None:
    assert {"tiny", "demo"} <= set(PRESETS)
    with pytest.raises(ValueError, match="unknown preset"):
        generate_world(tmp_path, preset="huge")
    with pytest.raises(ValueError, match=r"unknown generator parameters \['dayz'\]"):
        generate_world(tmp_path, dayz=3)
    with pytest.raises(ValueError, match="'days' must be int"):
        generate_world(tmp_path, days="many")
