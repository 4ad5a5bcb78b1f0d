"""Assemble a generated world and write one IBM-format CSV per member bank plus its manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from simulation.world.banks import Rows, World
from simulation.world.benign import benign_flows
from simulation.world.chunked import Tally, write_windows
from simulation.world.files import (
    bank_counts,
    bank_ids,
    bank_info,
    bank_table,
    visible_rows,
    write_bank_file,
)
from simulation.world.presets import (
    CHUNK_DAYS,
    MANIFEST_FORMAT,
    REPORTING_THRESHOLD,
    TYPOLOGIES,
    check_holdout,
    resolve_params,
)
from simulation.world.typologies import laundering


def _all_rows(w: World) -> Rows:
    rows = visible_rows(w, Rows.concat([*benign_flows(w), laundering(w)]))
    return rows.take(np.argsort(rows.t, kind="stable"))


def _stamp(w: World, minute: int) -> str:
    text = str(w.start.astype("datetime64[m]") + minute)
    return text.replace("-", "/").replace("T", " ")


def generate_world(
    out_dir: Path | str,
    *,
    n_banks: int | None = None,
    preset: str = "tiny",
    seed: int = 0,
    chunk_days: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Write one IBM-format CSV per member bank plus ``manifest.json``; return the manifest.

    A bank's file holds every row where it is the sending or the receiving bank, in
    time order. The first ``train_fraction`` of the period (ending at the manifest's
    ``train_end``) shows each bank only its ``train_typologies``; afterwards every
    typology occurs everywhere. The same arguments always give byte-identical files.

    Parameters
    ----------
    out_dir : created if missing; existing ``bank_*.csv`` files of the same ids are replaced.
    n_banks : number of member banks (ids ``"1"`` .. ``str(n_banks)``, ``"1"`` the largest);
        default the preset's ``banks``.
    preset : a key of `PRESETS`; ``overrides`` replace single preset values, e.g.
        ``holdout={"cycle": ["1"], "account_takeover": ["2"]}`` (those typologies occur in
        the training period only at the named banks), ``typology_alpha=0.3`` (each bank's
        training typology mix ~ Dirichlet(0.3)), ``size_skew`` (Zipf exponent of bank
        sizes), ``base_rate_spread``, ``cross_bank_share``, and ``mule_reuse_share`` (in no
        preset: the chance that a scheme uses again an account an earlier scheme at that
        bank used; the manifest names it only when it is given).
    chunk_days : generate and write this many days at a time in bounded memory
        (`simulation.world.chunked`: the same design, but another world than the
        in-memory path draws for the seed); 0 = the whole world in memory. Default: the
        preset's entry in `CHUNK_DAYS` (``hi-medium``, ``hi-large``), else 0.
    """
    params = resolve_params(preset, overrides)
    n_banks = int(params["banks"]) if n_banks is None else n_banks
    if n_banks < 1:
        raise ValueError("n_banks must be at least 1")
    chunk_days = CHUNK_DAYS.get(preset, 0) if chunk_days is None else chunk_days
    if chunk_days < 0:
        raise ValueError("chunk_days must be 0 (all in memory) or a number of days")
    params["banks"] = n_banks
    params["holdout"] = check_holdout(params["holdout"], n_banks)
    world = World(n_banks, params, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if chunk_days:
        tally = write_windows(world, out_dir, seed=seed, chunk_days=chunk_days)
    else:
        tally = _write_whole(world, out_dir)
    banks = {
        bank_id: {**bank_info(world, index), **tally.banks[index]}
        for index, bank_id in enumerate(bank_ids(world)[:n_banks].tolist())
    }
    manifest = _manifest(world, preset, seed, params, banks, tally.totals())
    if chunk_days:
        manifest["chunk_days"] = chunk_days  # says which generator drew this world
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def _write_whole(world: World, out_dir: Path) -> Tally:
    """The whole world in memory, from one stream: the byte-identical path of the presets."""
    rows = _all_rows(world)
    tally = Tally(world)
    tally.add(rows)
    bank = world.accounts.bank
    for index, bank_id in enumerate(bank_ids(world)[: world.n_members].tolist()):
        mine = (bank[rows.src] == index) | (bank[rows.dst] == index)
        tally.add_bank(index, bank_counts(world, rows, mine))
        table = bank_table(world, rows.take(np.flatnonzero(mine)))
        write_bank_file(out_dir / f"bank_{bank_id}.csv", table, append=False)
        del table
    return tally


def _manifest(
    w: World,
    preset: str,
    seed: int,
    params: dict[str, Any],
    banks: dict[str, Any],
    totals: dict[str, Any],
) -> dict[str, Any]:
    train_banks = {
        t: [b for b, info in banks.items() if info["typology_rows_train"][t]] for t in TYPOLOGIES
    }
    return {
        "format": MANIFEST_FORMAT,
        "seed": seed,
        "preset": preset,
        "n_banks": w.n_members,
        "params": params,
        "start": _stamp(w, 0),
        "end": _stamp(w, w.minutes),
        "train_end": _stamp(w, w.train_end),
        "typologies": list(TYPOLOGIES),
        "holdout": params["holdout"],
        "train_banks": train_banks,  # which member banks saw each typology while training
        "reporting_threshold": REPORTING_THRESHOLD,
        "banks": banks,
        "totals": totals,
    }
