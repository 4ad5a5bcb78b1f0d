"""Assemble a generated world and write one IBM-format CSV per member bank plus its manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulation.world.banks import Rows, World
from simulation.world.benign import benign_flows
from simulation.world.presets import (
    BENIGN_KINDS,
    CURRENCIES,
    EXTRA_HEADER,
    FIRST_EXTERNAL_BANK,
    FORMATS,
    IBM_HEADER,
    MANIFEST_FORMAT,
    REPORTING_THRESHOLD,
    TYPOLOGIES,
    UNITS_PER_USD,
    check_holdout,
    resolve_params,
)
from simulation.world.typologies import laundering


def _all_rows(w: World) -> Rows:
    rows = Rows.concat([*benign_flows(w), laundering(w)])
    member = w.accounts.bank < w.n_members
    visible = member[rows.src] | member[rows.dst]  # nobody in the consortium sees the rest
    opened = np.zeros(w.accounts.size, np.int64)
    opened[: len(w.opened)] = w.opened  # accounts created later (mules) are open when used
    is_open = (rows.t >= opened[rows.src]) & (rows.t >= opened[rows.dst])
    rows = rows.take(np.flatnonzero(visible & (is_open | (rows.attempt >= 0))))
    return rows.take(np.argsort(rows.t, kind="stable"))


def _bank_ids(w: World) -> np.ndarray:
    members = np.arange(1, w.n_members + 1)
    outside = FIRST_EXTERNAL_BANK + np.arange(w.n_banks - w.n_members)
    return np.concatenate([members, outside]).astype(str)


def _account_names(w: World) -> np.ndarray:
    """IBM-style account ids: "8", the bank id padded to 3 digits, then the index in hex."""
    ids = _bank_ids(w)
    bank = w.accounts.bank
    return np.char.add("8", np.char.add(np.char.zfill(ids[bank], 3), _hex(np.arange(len(bank)))))


def _table(w: World, rows: Rows, account: np.ndarray) -> pd.DataFrame:
    """Format the rows as the CSV's text columns (IBM order, then the extras).

    Called once per bank file: text columns take far more memory than the numeric rows,
    so only one bank's worth of them exists at a time.
    """
    bank = w.accounts.bank
    ids = _bank_ids(w)
    btc = rows.fmt == FORMATS.index("Bitcoin")
    per_usd = np.array([UNITS_PER_USD[c] for c in CURRENCIES])
    pay_cur = np.where(btc, CURRENCIES.index("Bitcoin"), w.currency[bank[rows.src]])
    recv_cur = np.where(btc, CURRENCIES.index("Bitcoin"), w.currency[bank[rows.dst]])
    decimals = np.where(btc, 6, 2)
    paid = _round(rows.usd * per_usd[pay_cur], decimals)
    received = _round(paid * per_usd[recv_cur] / per_usd[pay_cur], decimals)
    stamp = (w.start.astype("datetime64[m]") + rows.t).astype(str)
    label = rows.attempt >= 0
    kinds = np.array(BENIGN_KINDS + TYPOLOGIES)
    return pd.DataFrame({
        "ts": np.char.replace(np.char.replace(stamp, "-", "/"), "T", " "),
        "from_bank": ids[bank[rows.src]], "from_account": account[rows.src],
        "to_bank": ids[bank[rows.dst]], "to_account": account[rows.dst],
        "received": _fmt_amount(received, btc), "recv_cur": np.array(CURRENCIES)[recv_cur],
        "paid": _fmt_amount(paid, btc), "pay_cur": np.array(CURRENCIES)[pay_cur],
        "format": np.array(FORMATS)[rows.fmt], "label": label.astype(int),
        "attempt": np.where(label, _attempt_ids(rows.attempt), ""),
        "typology": np.where(label, np.array(TYPOLOGIES)[np.maximum(rows.typology, 0)], ""),
        "kind": kinds[rows.kind],
    })  # fmt: skip


def _attempt_ids(attempt: np.ndarray) -> np.ndarray:
    return np.char.add("A", np.char.zfill((attempt + 1).astype(str), 6))


def _hex(values: np.ndarray) -> np.ndarray:
    return np.array([f"{v:05X}" for v in values.tolist()])


def _round(x: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    scale = 10.0**decimals
    return np.maximum(np.round(x * scale), 1) / scale  # never a zero amount


def _fmt_amount(x: np.ndarray, btc: np.ndarray) -> np.ndarray:
    text = np.char.mod("%.2f", x).astype(object)
    text[btc] = np.char.mod("%.6f", x[btc])  # bitcoin amounts are small: keep satoshi-ish precision
    return text


def _bank_summary(w: World, rows: Rows, mine: np.ndarray, index: int) -> dict[str, Any]:
    typology, in_train = rows.typology[mine], rows.t[mine] < w.train_end

    def count(part: np.ndarray) -> dict[str, int]:
        return {t: int(((typology == k) & part).sum()) for k, t in enumerate(TYPOLOGIES)}

    return {
        "file": f"bank_{_bank_ids(w)[index]}.csv",
        "rows": int(mine.sum()),
        "laundering_rows": int((typology >= 0).sum()),
        "segment": w.segment[index],
        "currency": CURRENCIES[w.currency[index]],
        "rate_factor": round(float(w.rate_factor[index]), 6),
        "train_mix": {t: round(float(w.mix[index, k]), 6) for k, t in enumerate(TYPOLOGIES)},
        "train_typologies": [t for k, t in enumerate(TYPOLOGIES) if w.allowed[index, k]],
        "typology_rows": count(np.ones_like(in_train)),
        "typology_rows_train": count(in_train),
        "typology_rows_holdout": count(~in_train),
    }


def _stamp(w: World, minute: int) -> str:
    text = str(w.start.astype("datetime64[m]") + minute)
    return text.replace("-", "/").replace("T", " ")


def generate_world(
    out_dir: Path | str,
    *,
    n_banks: int | None = None,
    preset: str = "tiny",
    seed: int = 0,
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
        sizes), ``base_rate_spread``, ``cross_bank_share``.
    """
    params = resolve_params(preset, overrides)
    n_banks = int(params["banks"]) if n_banks is None else n_banks
    if n_banks < 1:
        raise ValueError("n_banks must be at least 1")
    params["banks"] = n_banks
    params["holdout"] = check_holdout(params["holdout"], n_banks)
    world = World(n_banks, params, seed)
    rows = _all_rows(world)
    account = _account_names(world)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bank = world.accounts.bank
    banks = {}
    for index, bank_id in enumerate(_bank_ids(world)[:n_banks].tolist()):
        mine = (bank[rows.src] == index) | (bank[rows.dst] == index)
        banks[bank_id] = _bank_summary(world, rows, mine, index)
        header = IBM_HEADER + EXTRA_HEADER
        table = _table(world, rows.take(np.flatnonzero(mine)), account)
        table.to_csv(
            out_dir / banks[bank_id]["file"], index=False, header=header, lineterminator="\n"
        )
        del table
    manifest = _manifest(world, rows, preset, seed, params, banks)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def _manifest(
    w: World, rows: Rows, preset: str, seed: int, params: dict[str, Any], banks: dict[str, Any]
) -> dict[str, Any]:
    attempts = {
        t: len(np.unique(rows.attempt[rows.typology == k])) for k, t in enumerate(TYPOLOGIES)
    }
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
        "totals": {
            "rows": len(rows.t),
            "laundering_rows": int((rows.attempt >= 0).sum()),
            "attempts": attempts,
        },
    }
