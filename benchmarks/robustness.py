"""One bad bank against the consortium's defences: held-out AUPRC with and without it.

Run: ``.venv/bin/python benchmarks/robustness.py [--preset small|tiny] [--rounds 6]
[--strict]`` (``--preset tiny --rounds 2`` for a quick run).

Every mode runs in process with the real parts, in one run: each bank trains with the
node's own step (``bank_node.training.train_round``) on the consortium's normalisation,
caps its count and clips its step (``models.influence``), packs ``[(n/u) w, n/u, tag]``
with its integrity tag (``he.codec``, ``he.integrity``) and encrypts it with CKKS in the
v2 container (``he.seeded``, the secret-key seeded encryption the nodes use); the
encrypted uploads are summed with the public context only, as the portal does, and
decrypted. The members then run the node's checks (``he.integrity.check_aggregate``,
``bank_node.aggregate_guard.check_global_model`` with the consortium's row total, and the
clip-norm bound ``models.influence.norm_bound``) and, on what passes, the evaluation gate
(``models.gate`` on every bank's validation rows): a refused or rejected candidate is not
the next base. One bank (``--attacker``) misbehaves in the attack rounds in one of
``attacks.MODES``; the table says which defence caught it and how far the mean held-out
AUPRC (each bank's test rows, the model the consortium ends with) lands from the run
without an attacker.

Left out, as they do not change the figures: secure aggregation's pairwise masks (they
cancel exactly modulo q; the foreign-key and random-coefficient uploads are real
ciphertexts), the statistics and gate rounds' encryption (pooled moments and summed
histograms in plaintext: the same totals every member decrypts; the gate rounds counts to
whole rows). The attacker sends honest histograms to the gate.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bank_node.aggregate_guard import Expected, check_global_model, initial_weights  # noqa: E402
from bank_node.checks import Refused  # noqa: E402
from bank_node.counts import MAX_BANKS_PER_SUM, training_count_unit  # noqa: E402
from bank_node.training import (  # noqa: E402
    LocalData,
    Normalizer,
    feature_moments,
    local_data,
    model_from_vector,
    train_round,
)
from he import integrity  # noqa: E402
from he import keys as he_keys  # noqa: E402
from he.codec import TRAILER_SLOTS, check_headroom, pack_update  # noqa: E402
from he.params import CkksParams  # noqa: E402
from he.ring import kit_from_tenseal  # noqa: E402
from he.seeded import decrypt_vector2, encrypt_vector2, sum_vectors2  # noqa: E402
from models.federation import fedavg  # noqa: E402
from models.gate import gate_decide, gate_vector  # noqa: E402
from models.influence import capped_rows, clip_update, norm_bound, update_norm  # noqa: E402
from models.metrics import auprc  # noqa: E402
from models.training import predict_scores  # noqa: E402
from protocol import PolicySnapshot  # noqa: E402
from simulation.datadir import bank_files  # noqa: E402
from simulation.world import generate_world  # noqa: E402

# The defences' settings: a policy the banks would sign. The clip norm sits above the
# honest steps measured on `tiny` and `small` (about 4-5 in the first round from the
# initial weights, 1-2 later), so it costs honest banks nothing and bounds a scaled step.
DEFAULTS: dict[str, Any] = {"update_clip_norm": 6.0, "max_bank_share": 0.5,
                            "gate_tolerance": 0.01, "gate_alert_rate": 0.01}  # fmt: skip
TARGET = 0.02  # the most a mode may cost the mean held-out AUPRC (issue 13, "Proof")
MODES = ("count_x1000", "negative_count", "foreign_key", "random_coefficients", "overflow",
         "scaled_x100", "sign_flip", "label_flip")  # fmt: skip
# Every value of an overflow upload: above the 2^30 the 60-bit data prime surely holds at
# scale 2^28 (CkksParams.max_plain_magnitude) yet below what SEAL's encoder refuses, so
# the encrypted sum wraps modulo q.
OVERFLOW_VALUE = 2.0**31
COUNT_FACTOR = {"count_x1000": 1000.0, "negative_count": -1000.0}


@dataclass(frozen=True)
class Attack:
    """How one upload's plaintext is made: honestly (``mode`` None) or in one of ``MODES``.

    ``base`` is the round's starting point, around which a step is scaled or flipped.
    """

    mode: str | None
    base: np.ndarray
    unit: int

    def plaintext(self, weights: np.ndarray, rows: int, tag: float) -> np.ndarray:
        """The vector this bank encrypts: the node's packing, or the attacker's."""
        if self.mode is None:
            packed = pack_update(weights, rows, tag, self.unit)
            check_headroom(packed, CkksParams(), MAX_BANKS_PER_SUM)
            return packed
        if self.mode == "overflow":
            return np.resize([OVERFLOW_VALUE, -OVERFLOW_VALUE], weights.size + TRAILER_SLOTS)
        w = np.asarray(weights, dtype=np.float64)
        if self.mode == "scaled_x100":
            w = self.base + 100.0 * (w - self.base)
        elif self.mode == "sign_flip":
            w = self.base - (w - self.base)
        count = COUNT_FACTOR.get(self.mode, 1.0) * rows / self.unit
        return np.concatenate([w * count, [count, tag]])


class Consortium:
    """One key epoch: the members' secret kit and integrity key, the portal's public kit."""

    def __init__(self, work: Path) -> None:
        params = CkksParams()
        secret = he_keys.generate_secret_context(params)
        public = he_keys.public_context_bytes(secret)
        self.fingerprint = he_keys.fingerprint(public)
        self.member = kit_from_tenseal(secret, params)
        self.portal = kit_from_tenseal(he_keys.load_public_context(public, params), params)
        # The attacker's own key ceremony: real ciphertexts the consortium's key cannot open.
        self.foreign = kit_from_tenseal(he_keys.generate_secret_context(params), params)
        self.integrity_key = integrity.integrity_key_new()
        self.rng = np.random.default_rng(0)
        self.work = work
        work.mkdir(parents=True, exist_ok=True)

    def upload(self, attack: Attack, weights: np.ndarray, rows: int, tag: float,
               name: str) -> Path:  # fmt: skip
        """Encrypt one bank's upload as a node does (v2 container, consortium fingerprint)."""
        kit = self.foreign if attack.mode == "foreign_key" else self.member
        masker = self.random_words if attack.mode == "random_coefficients" else None
        path = self.work / f"{name}.ckks"
        with open(path, "wb") as out:
            encrypt_vector2(kit, attack.plaintext(weights, rows, tag), self.fingerprint, out,
                            masker)  # fmt: skip
        return path

    def random_words(self, chunk: int) -> np.ndarray:
        """Uniform words modulo each data prime: added to a ciphertext, they make it random."""
        return self.rng.integers(0, self.member.modulus_column, dtype=np.uint64)

    def aggregate(self, paths: list[Path]) -> np.ndarray:
        """The portal's sum (public context only), decrypted as every member does."""
        summed = io.BytesIO()
        sum_vectors2(paths, self.portal, summed)
        for path in paths:
            path.unlink()
        return decrypt_vector2(self.member, io.BytesIO(summed.getvalue()))


@dataclass
class Bank:
    """One member's data as its node sees it, on the consortium's normalisation."""

    bank_id: str
    data: LocalData


@dataclass
class Federation:
    """Where a run stands: the adopted model (None: the initial one) and what happened."""

    base: np.ndarray | None = None
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Setup:
    """Everything the rounds share: the banks, the policy, the crypto and the defences."""

    banks: list[Bank]
    policy: PolicySnapshot
    crypto: Consortium
    total_rows: int
    unit: int
    settings: dict[str, Any]
    attacker: str


def load_banks(directory: Path) -> tuple[list[Bank], int]:
    """Every bank's splits normalised by the pooled moments (the statistics round's)."""
    raw = [(f.bank_id, local_data(f.path)) for f in bank_files(directory)]
    moments = [feature_moments(d) for _, d in raw]
    total = sum(n for _, n in moments)
    norm = Normalizer.from_moments(fedavg(moments), 1, total)
    return [Bank(bank_id, data.normalized(norm)) for bank_id, data in raw], total


def honest_update(setup: Setup, bank: Bank, data: LocalData, base0: np.ndarray,
                  base: np.ndarray | None, number: int) -> tuple[np.ndarray, int]:  # fmt: skip
    """What an honest node sends: its trained weights clipped, its count capped."""
    weights, n = train_round(data, setup.policy, base, seed=number)
    weights, _ = clip_update(weights, base0, setup.settings["update_clip_norm"])
    return weights, capped_rows(n, setup.total_rows, setup.settings["max_bank_share"])


def uploads(setup: Setup, fed: Federation, number: int, mode: str | None) -> list[Path]:
    """Every bank's encrypted upload for round ``number``; the attacker's in ``mode``."""
    base0 = fed.base if fed.base is not None else start_weights(setup)
    paths = []
    for bank in setup.banks:
        bad = mode is not None and bank.bank_id == setup.attacker
        data = bank.data
        if bad and mode == "label_flip":
            data = dataclasses.replace(data, y_train=1.0 - data.y_train)
        weights, rows = honest_update(setup, bank, data, base0, fed.base, number)
        crypto = setup.crypto
        tag = integrity.tag_value(crypto.integrity_key, crypto.fingerprint, number, bank.bank_id)
        attack = Attack(mode if bad else None, base0, setup.unit)
        paths.append(setup.crypto.upload(attack, weights, rows, tag, f"{number}-{bank.bank_id}"))
    return paths


def start_weights(setup: Setup) -> np.ndarray:
    return initial_weights(0, setup.policy.model_spec, setup.policy.n_features)


def node_checks(setup: Setup, fed: Federation, number: int, summed: np.ndarray) -> np.ndarray:
    """The members' checks on a decrypted sum; ``Refused`` names the first that fails."""
    names = [b.bank_id for b in setup.banks]
    crypto = setup.crypto
    try:
        weights, rows = integrity.check_aggregate(
            summed, names, crypto.integrity_key, crypto.fingerprint, number, setup.unit
        )
    except integrity.AggregateRejected as exc:
        raise Refused("aggregate_integrity", str(exc)) from exc
    spec, n_features = setup.policy.model_spec, setup.policy.n_features
    expected = Expected(number, spec, n_features, n_banks=len(names), count_unit=setup.unit,
                        consortium_rows=setup.total_rows)  # fmt: skip
    check_global_model(expected, weights, rows)
    clip = setup.settings["update_clip_norm"]
    base0 = fed.base if fed.base is not None else start_weights(setup)
    if update_norm(weights, base0) > norm_bound(clip, weights.size):
        raise Refused("update_too_large", f"round {number}: moved further than the clip norm")
    return weights


def gate_adopts(setup: Setup, fed: Federation, candidate: np.ndarray) -> bool:
    """The evaluation gate on every bank's validation rows: adopt the candidate or not."""
    tolerance = setup.settings["gate_tolerance"]
    cand, cur = model_of(setup, candidate), model_of(setup, fed.base)
    summed = sum(gate_vector(predict_scores(cand, b.data.x_val), predict_scores(cur, b.data.x_val),
                             b.data.y_val) for b in setup.banks)  # fmt: skip
    return gate_decide(summed, tolerance, setup.settings["gate_alert_rate"]).adopt


def model_of(setup: Setup, weights: np.ndarray | None) -> torch.nn.Module:
    return model_from_vector(setup.policy.model_spec, setup.policy.n_features, weights)


def play_round(setup: Setup, fed: Federation, number: int, mode: str | None) -> None:
    """One training round: upload, sum, decrypt, check, gate; the base moves or stays."""
    summed = setup.crypto.aggregate(uploads(setup, fed, number, mode))
    try:
        candidate = node_checks(setup, fed, number, summed)
    except Refused as exc:
        fed.events.append(f"refused ({exc.reason})")
        return
    if not gate_adopts(setup, fed, candidate):
        fed.events.append("rejected by gate")
        return
    fed.base = candidate
    fed.events.append("adopted")


def mean_auprc(setup: Setup, weights: np.ndarray | None) -> float:
    """Mean over banks of the AUPRC on each bank's held-out test rows."""
    model = model_of(setup, weights)
    return float(np.mean([auprc(b.data.y_test, predict_scores(model, b.data.x_test))
                          for b in setup.banks]))  # fmt: skip


def run_modes(setup: Setup, modes: list[str], rounds: int, attack_rounds: set[int]
              ) -> dict[str, Federation]:  # fmt: skip
    """No attacker and every mode; the rounds before the first attack are played once."""
    shared = Federation()
    first = min(attack_rounds, default=rounds + 1)
    for number in range(1, min(first, rounds + 1)):
        play_round(setup, shared, number, None)
    runs: dict[str, Federation] = {}
    for mode in ["none", *modes]:
        started = time.monotonic()
        fed = Federation(shared.base, list(shared.events))
        for number in range(first, rounds + 1):
            attacking = mode != "none" and number in attack_rounds
            play_round(setup, fed, number, mode if attacking else None)
        runs[mode] = fed
        print(f"[robustness] {mode}: {fed.events} in {time.monotonic() - started:.0f}s",
              flush=True)  # fmt: skip
    return runs


def caught_by(fed: Federation, attack_rounds: set[int]) -> str:
    """What the defences did in the rounds the attacker misbehaved in."""
    seen = [fed.events[n - 1] for n in sorted(attack_rounds) if n <= len(fed.events)]
    absorbed = ["absorbed" if e == "adopted" else e for e in seen]
    return ", ".join(dict.fromkeys(absorbed)) or "-"


def table(setup: Setup, runs: dict[str, Federation], attack_rounds: set[int]
          ) -> tuple[list[str], dict[str, Any]]:  # fmt: skip
    """The printed table and its figures; a miss is a difference beyond ``TARGET``."""
    clean = mean_auprc(setup, runs["none"].base)
    lines = [f"{'mode':<22}{'caught by':<40}{'AUPRC':>8}{'diff':>9}  target"]
    figures: dict[str, Any] = {}
    for mode, fed in runs.items():
        value = mean_auprc(setup, fed.base)
        diff = value - clean
        ok = diff >= -TARGET
        what = "-" if mode == "none" else caught_by(fed, attack_rounds)
        lines.append(f"{mode:<22}{what:<40}{value:>8.4f}{diff:>+9.4f}  {'pass' if ok else 'MISS'}")
        figures[mode] = {"auprc": value, "diff": diff, "pass": ok, "caught_by": what,
                         "events": fed.events}  # fmt: skip
    return lines, figures


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--attacker", default="2", help="the malicious bank's id (default 2)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated; default all")
    p.add_argument("--attack-rounds", default="mid",
                   help="'mid' (the middle round, the default), 'all', or e.g. '2,4'")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="a generated world (default: generate one)")
    p.add_argument("--out", default=None, help="default benchmarks/out/robustness-PRESET")
    p.add_argument("--strict", action="store_true", help="exit 1 when a mode misses the target")
    for key, value in DEFAULTS.items():
        p.add_argument("--" + key.replace("_", "-"), type=float, default=value)
    args = p.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown or args.rounds < 1:
        p.error(f"unknown mode(s) {sorted(unknown)}" if unknown else "--rounds must be >= 1")
    return args


def attack_rounds_of(spec: str, rounds: int) -> set[int]:
    """The rounds the attacker misbehaves in: the middle one, all, or a list."""
    if spec == "mid":
        return {(rounds + 1) // 2 + (1 if rounds > 1 else 0)} & set(range(1, rounds + 1))
    if spec == "all":
        return set(range(1, rounds + 1))
    return {int(x) for x in spec.split(",")} & set(range(1, rounds + 1))


def build(args: argparse.Namespace, work: Path) -> Setup:
    """Load (or generate) the world and key a consortium for it."""
    data = Path(args.data_dir) if args.data_dir else work / "data"
    if not (data / "manifest.json").exists():
        generate_world(data, preset=args.preset, seed=args.seed)
    banks, total = load_banks(data)
    if args.attacker not in {b.bank_id for b in banks}:
        raise SystemExit(f"--attacker {args.attacker}: no such bank in {data}")
    quality = _quality_module()
    # Its own loop averages plainly: the server optimiser stays FedAvg, as measured.
    hyper = {**quality.HYPER, "rounds": args.rounds, "server_optimizer": "fedavg"}
    policy = quality.policy_of(hyper)
    settings = {k: getattr(args, k) for k in DEFAULTS}
    return Setup(banks, policy, Consortium(work / "uploads"), total,
                 training_count_unit(total), settings, args.attacker)  # fmt: skip


def _quality_module() -> Any:
    """benchmarks/quality.py, for its hyperparameters and policy (the same model is tested)."""
    path = ROOT / "benchmarks" / "quality.py"
    spec = importlib.util.spec_from_file_location("benchmark_quality", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    work = Path(args.out or ROOT / "benchmarks" / "out" / f"robustness-{args.preset}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # as the nodes run; keeps runs comparable and deterministic
    started = time.monotonic()
    setup = build(args, work)
    attack_rounds = attack_rounds_of(args.attack_rounds, args.rounds)
    print(f"[robustness] preset {args.preset}, {len(setup.banks)} banks, {args.rounds} rounds, "
          f"attacker bank {args.attacker} in rounds {sorted(attack_rounds)}, {setup.settings}",
          flush=True)  # fmt: skip
    runs = run_modes(setup, args.modes.split(","), args.rounds, attack_rounds)
    lines, figures = table(setup, runs, attack_rounds)
    lines.append(f"seconds: {time.monotonic() - started:.0f}")
    print("\n".join(lines))
    (work / "robustness.json").write_text(json.dumps(
        {"args": vars(args), "attack_rounds": sorted(attack_rounds), "modes": figures},
        indent=2, default=str))  # fmt: skip
    return exit_code(figures, args.strict)


def exit_code(figures: dict[str, Any], strict: bool) -> int:
    """1 when ``strict`` and a mode missed the target; 0 otherwise (the table says it)."""
    return 1 if strict and any(not f["pass"] for f in figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
