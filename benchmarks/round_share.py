"""Share of a node's round time spent on encryption under secure aggregation v2 (issue 12).

    python benchmarks/round_share.py [--params 1000000] [--peers 19] [--repeats 3]
                                     [--preset tiny] [--bank 1] [--seed 0]
                                     [--model-spec JSON] [--workers 2] [--banks 20]

In one process: generate a seeded synthetic world (``simulation.world``, no download), then
time one node's local training round on one bank's data exactly as the node runs it
(``bank_node.training.train_round`` with the demo's policy: model, local epochs, batch
size, learning rate; features normalised; one torch thread, as the demo's nodes) - T_train.
Then time the v2 encryption of an update (seeded, complex-packed, ``--peers`` pairwise
masks plus a self-mask, as ``benchmarks/he_cost.py`` does) three ways: with the masks
derived chunk by chunk while encrypting (``he.seeded.encrypt_vector2`` with ``masker_for``)
- T_enc (v2 inline); the masks alone (``he.premask.precompute_masks``, what a node computes
on a thread while it trains) - T_mask; and the encryption with those masks ready - T_enc
(v2 pre), the node's critical path once training ends. Also the v1 encryption of the same
vector (``he.codec.encrypt_vector``) for comparison; every encryption is written to a file
as the node does. Then, for updates of at least ``POOL_MIN_VALUES``, the v2 encryption by
``--workers`` processes (``bank_node.encrypt_pool``, what the node runs for such updates):
the workers start and compute their blocks' masks beforehand (while the node trains), and
T_enc (workers) is the encryption once the update is ready, on the wall clock and as the
critical path's CPU (the node's own CPU plus the slowest worker's: what a node with a core
per worker waits), beside the CPU all processes spent. Two update sizes: ``--params``
values (default 1,000,000, the issue's size) and the demo model's own vector. Every timing
is the median of ``--repeats`` runs, on two clocks: the process's CPU time (what a
dedicated node waits; robust to other jobs on a shared machine) and wall-clock time.
Prints the timings and the share T_enc / (T_train + T_enc) under each encryption, on each
clock, against the target of at most 5 % at 1M values. Then the rest of the node's round at
``--params`` values (``round_share_rest.py``): recomputing the aggregate of ``--banks``
uploads, decrypting it and evaluating the published model, and each encryption's share of
that whole round, T_enc / (T_train + T_enc + T_check + T_decrypt + T_eval). Clocks, keys
and updates live in ``round_share_common.py``, the workers' timing in
``round_share_workers.py``, beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Its two helper modules sit beside it (loaded by path in the tests, as a script here).
sys.path.insert(0, str(ROOT / "benchmarks"))

from round_share_common import (  # noqa: E402
    CLOCKS,
    FIRST_TRAINING_ROUND,
    TARGET_PARAMS,
    TARGET_SHARE,
    Clock,
    Crypto,
    Timing,
    crypto_setup,
    encryption_share,
    median_timing,
    update_values,
)
from round_share_rest import rest_lines, time_rest  # noqa: E402
from round_share_workers import (  # noqa: E402
    measure_workers,
    time_training_beside_workers,
    worker_lines,
    workers_overlap_line,
)

from bank_node.encrypt_pool import POOL_MIN_VALUES  # noqa: E402
from bank_node.training import (  # noqa: E402
    LocalData,
    Normalizer,
    feature_moments,
    local_data,
    model_from_vector,
    train_round,
)
from he.codec import TRAILER_SLOTS, encrypt_vector  # noqa: E402
from he.premask import PrecomputedMasks, precompute_masks  # noqa: E402
from he.seeded import Masker, encrypt_vector2, masker_for  # noqa: E402
from models.features import FEATURE_NAMES  # noqa: E402
from models.vector import vector_length  # noqa: E402
from protocol import (  # noqa: E402
    DEFAULT_GATE_ALERT_RATE,
    MIN_BANKS_FLOOR,
    SERVER_OPT_DEFAULTS,
    PolicySnapshot,
    default_ckks_params,
)
from simulation.world import generate_world  # noqa: E402

# The demo's policy (simulation/demo_policy.py's flag defaults; a test keeps them equal).
DEMO_HYPER: dict[str, Any] = {
    "local_epochs": 2,
    "batch_size": 256,
    "learning_rate": 3e-3,
    "fedprox_mu": 0.0,
    "model_spec": {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce", "pos_weight": 10},
}


def demo_policy(model_spec: dict[str, Any] | None = None) -> PolicySnapshot:
    """The snapshot a node receives under the demo's policy (v2, features normalised).

    ``model_spec`` replaces the demo's model only (to time training of a larger model).
    """
    spec = DEMO_HYPER["model_spec"] if model_spec is None else model_spec
    model = model_from_vector(spec, len(FEATURE_NAMES), None)
    return PolicySnapshot(
        name="demo",
        version=1,
        model_spec=spec,
        n_features=len(FEATURE_NAMES),
        vector_length=vector_length(model) + TRAILER_SLOTS,
        local_epochs=DEMO_HYPER["local_epochs"],
        batch_size=DEMO_HYPER["batch_size"],
        learning_rate=DEMO_HYPER["learning_rate"],
        fedprox_mu=DEMO_HYPER["fedprox_mu"],
        min_banks=MIN_BANKS_FLOOR,
        deadline_seconds=300,
        max_rounds=3,
        ckks_params=default_ckks_params(),
        normalize_features=True,
        dp_target_epsilon=None,
        dp_delta=1e-5,
        dp_max_grad_norm=1.0,
        dp_noise_multiplier=None,
        secure_aggregation="v2",
        aggregate_checkers=0,
        max_bank_share=None,
        update_clip_norm=None,
        gate_tolerance=None,
        gate_alert_rate=DEFAULT_GATE_ALERT_RATE,
        **SERVER_OPT_DEFAULTS,
    )


def bank_data(world_dir: Path, preset: str, seed: int, bank: str) -> LocalData:
    """One bank's splits of a generated world, normalised as after a statistics round.

    The bank's own moments stand in for the consortium's pooled ones: the values differ,
    the work per epoch does not.
    """
    manifest = generate_world(world_dir, preset=preset, seed=seed)
    if bank not in manifest["banks"]:
        raise SystemExit(f"no bank {bank!r} in the {preset} world: {sorted(manifest['banks'])}")
    data = local_data(world_dir / manifest["banks"][bank]["file"])
    moments, _rows = feature_moments(data)
    return data.normalized(Normalizer.from_moments(moments, FIRST_TRAINING_ROUND - 1))


def time_training(data: LocalData, policy: PolicySnapshot, repeats: int) -> Timing:
    """T_train: the node's training round from the policy's initial weights."""
    return median_timing(
        lambda: train_round(data, policy, None, seed=FIRST_TRAINING_ROUND), repeats
    )


def time_training_beside_masks(
    data: LocalData, policy: PolicySnapshot, crypto: Crypto, length: int, repeats: int
) -> Timing:
    """T_train while the masks of ``length`` values compute on a thread, as a node runs them.

    Joined before the clock stops, so a mask computation outlasting training is counted.
    Its wall time is the node's; its CPU time is both threads'.
    """

    def train_beside_masks() -> None:
        masks = threading.Thread(
            target=precompute_masks, args=(crypto.kit, crypto.terms, crypto.binding, length)
        )
        masks.start()
        train_round(data, policy, None, seed=FIRST_TRAINING_ROUND)
        masks.join()

    return median_timing(train_beside_masks, repeats)


def overlap_line(alone: Timing, beside: Timing, length: int) -> str:
    """How much the mask thread lengthens training (wall clock: what the node waits)."""
    longer = beside.wall / alone.wall - 1 if alone.wall > 0 else float("nan")
    return (
        f"training with the masks of {length:,} values computing on a thread: "
        f"{beside.wall:.3f}s wall against {alone.wall:.3f}s alone ({longer:+.1%}); "
        f"CPU of both threads {beside.cpu:.3f}s"
    )


def time_encrypt_v2(crypto: Crypto, values: np.ndarray, path: Path, repeats: int) -> Timing:
    """T_enc (v2, masks inline): seeded, packed, masks derived chunk by chunk, to ``path``."""

    def encrypt() -> None:
        encrypt_v2(crypto, values, path, masker_for(crypto.kit, crypto.terms, crypto.binding))

    return median_timing(encrypt, repeats)


def time_masks(crypto: Crypto, length: int, repeats: int) -> tuple[Timing, PrecomputedMasks]:
    """T_mask: every chunk's combined mask for ``length`` values (what a node computes
    on a thread while it trains); also the masks, for ``time_encrypt_v2_precomputed``."""
    made: list[PrecomputedMasks] = []

    def compute() -> None:
        made[:] = [precompute_masks(crypto.kit, crypto.terms, crypto.binding, length)]

    return median_timing(compute, repeats), made[0]


def time_encrypt_v2_precomputed(
    crypto: Crypto, values: np.ndarray, masks: PrecomputedMasks, path: Path, repeats: int
) -> Timing:
    """T_enc (v2, masks precomputed): the node's critical path once training ends."""
    return median_timing(lambda: encrypt_v2(crypto, values, path, masks), repeats)


def encrypt_v2(crypto: Crypto, values: np.ndarray, path: Path, masker: Masker) -> None:
    with open(path, "wb") as out:
        encrypt_vector2(crypto.kit, values, crypto.fingerprint, out, masker)


def time_encrypt_v1(crypto: Crypto, values: np.ndarray, path: Path, repeats: int) -> Timing:
    """T_enc (v1): one public-key CKKS vector per chunk, written to ``path``."""

    def encrypt() -> None:
        with open(path, "wb") as out:
            encrypt_vector(crypto.secret, values, crypto.params, crypto.fingerprint, out)

    return median_timing(encrypt, repeats)


@dataclass(frozen=True)
class SizeResult:
    """Encryption and mask times of one update size beside the same training time.

    ``t_enc_v2`` derives the masks as it encrypts (a node without precomputation);
    ``t_mask`` computes them alone and ``t_enc_v2_pre`` encrypts with them ready.
    """

    label: str
    values: int
    t_train: Timing
    t_enc_v2: Timing
    t_enc_v1: Timing
    t_mask: Timing
    t_enc_v2_pre: Timing

    def share_v2(self, clock: Clock) -> float:
        return encryption_share(self.t_enc_v2.on(clock), self.t_train.on(clock))

    def share_v2_pre(self, clock: Clock) -> float:
        return encryption_share(self.t_enc_v2_pre.on(clock), self.t_train.on(clock))

    def share_v1(self, clock: Clock) -> float:
        return encryption_share(self.t_enc_v1.on(clock), self.t_train.on(clock))


def measure_sizes(
    crypto: Crypto, t_train: Timing, sizes: Sequence[tuple[str, int]], repeats: int
) -> list[SizeResult]:
    """Every encryption of one update per size, timed against ``t_train``."""
    results = []
    with tempfile.TemporaryDirectory(prefix="round-share-") as tmp:
        v2_path, v1_path = Path(tmp) / "update.ckks2", Path(tmp) / "update.ckks"
        for label, length in sizes:
            values = update_values(length)
            v2 = time_encrypt_v2(crypto, values, v2_path, repeats)
            v1 = time_encrypt_v1(crypto, values, v1_path, repeats)
            t_mask, masks = time_masks(crypto, length, repeats)
            pre = time_encrypt_v2_precomputed(crypto, values, masks, v2_path, repeats)
            results.append(SizeResult(label, length, t_train, v2, v1, t_mask, pre))
    return results


def report_lines(results: Sequence[SizeResult], peers: int) -> list[str]:
    """The comparable figures on each clock, one row per size, with the target's verdict."""
    lines = [
        f"v2: seeded, complex-packed, {peers} pair masks + self-mask; v1: public-key CKKS",
        "T_mask: the masks alone; v2 inline: masks derived while encrypting; "
        "v2 pre: masks computed beforehand (while training), encryption only",
    ]
    for clock, title in CLOCKS.items():
        lines += ["", title, TABLE_HEADER]
        lines += [row_line(r, clock) for r in results]
        lines += [target_line(r, clock) for r in results if r.values == TARGET_PARAMS]
    return lines


TABLE_HEADER = (
    f"  {'update':<24} {'values':>10} {'T_train':>8} {'T_mask':>7} {'v2 inline':>9} "
    f"{'v2 pre':>7} {'T_enc v1':>8} {'share inline':>12} {'share pre':>9} {'share v1':>8}"
)


def row_line(r: SizeResult, clock: Clock) -> str:
    return (
        f"  {r.label:<24} {r.values:>10,} {r.t_train.on(clock):>7.3f}s "
        f"{r.t_mask.on(clock):>6.3f}s {r.t_enc_v2.on(clock):>8.3f}s "
        f"{r.t_enc_v2_pre.on(clock):>6.3f}s {r.t_enc_v1.on(clock):>7.3f}s "
        f"{r.share_v2(clock):>11.2%} {r.share_v2_pre(clock):>8.2%} {r.share_v1(clock):>7.2%}"
    )


def target_line(r: SizeResult, clock: Clock) -> str:
    def verdict(share: float) -> str:
        return f"{share:.2%} ({'met' if share <= TARGET_SHARE else 'MISSED'})"

    return (
        f"  target ({clock}): share v2 <= {TARGET_SHARE:.0%} at {TARGET_PARAMS:,} values: "
        f"masks precomputed {verdict(r.share_v2_pre(clock))}, "
        f"masks inline {verdict(r.share_v2(clock))}"
    )


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object, or a clear error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=int, default=TARGET_PARAMS, help="values in the large update")
    p.add_argument("--peers", type=int, default=19, help="pairwise masks (cohort size - 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs per timing; the median is shown")
    p.add_argument("--preset", default="tiny", help="simulation.world preset")
    p.add_argument("--bank", default="1", help="the bank whose node is timed ('1' is largest)")
    p.add_argument("--seed", type=int, default=0, help="the world's seed")
    p.add_argument("--workers", type=int, default=2, help="encryption worker processes")
    p.add_argument(
        "--banks",
        type=int,
        default=None,
        help="uploads in the aggregate the node checks and decrypts (default: --peers + 1)",
    )
    p.add_argument(
        "--model-spec",
        type=json_object,
        default=None,
        help="model spec JSON instead of the demo's (see models.nets.build_model)",
    )
    args = p.parse_args(argv)
    if args.params <= TRAILER_SLOTS or args.peers < 0 or args.repeats < 1 or args.workers < 1:
        p.error(
            f"--params must exceed {TRAILER_SLOTS}, --peers be >= 0, --repeats and --workers >= 1"
        )
    args.banks = args.peers + 1 if args.banks is None else args.banks
    if args.banks < 1:
        p.error("--banks must be at least 1")
    return args


def setup_line(args: argparse.Namespace, data: LocalData, policy: PolicySnapshot) -> str:
    """What was timed: world, bank, model and policy."""
    return (
        f"world {args.preset} (seed {args.seed}), bank {args.bank}: {data.y_train.size:,} "
        f"training rows; model {json.dumps(policy.model_spec)} with "
        f"{policy.vector_length - TRAILER_SLOTS:,} parameters, {policy.local_epochs} local "
        f"epochs, batch {policy.batch_size}; median of {args.repeats} runs"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # as the demo's nodes run (torch_threads = 1)
    try:
        policy = demo_policy(args.model_spec)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise SystemExit(f"--model-spec: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="round-share-world-") as tmp:
        data = bank_data(Path(tmp), args.preset, args.seed, args.bank)
    print(setup_line(args, data, policy), flush=True)
    t_train = time_training(data, policy, args.repeats)
    sizes = [
        (f"{args.params:,} values", args.params),
        ("the model's own update", policy.vector_length),
    ]
    crypto = crypto_setup(args.peers)
    results = measure_sizes(crypto, t_train, sizes, args.repeats)
    print("\n".join(report_lines(results, args.peers)))
    workers = measure_workers(crypto, t_train, sizes, args.repeats, args.workers)
    print("\n".join(worker_lines(workers, args.workers)))
    rest = time_rest(crypto, data, policy, args.params, args.banks, args.repeats)
    encryptions = {"v2 inline": results[0].t_enc_v2, "v2 pre": results[0].t_enc_v2_pre}
    if workers and workers[0].values == args.params:
        encryptions[f"{args.workers} workers"] = workers[0].t_enc
    print("\n".join(rest_lines(rest, t_train, encryptions)))
    beside = time_training_beside_masks(data, policy, crypto, args.params, args.repeats)
    print("\n" + overlap_line(t_train, beside, args.params))
    if args.params >= POOL_MIN_VALUES:
        pooled = time_training_beside_workers(
            data, policy, crypto, args.params, args.repeats, args.workers
        )
        print(workers_overlap_line(t_train, pooled, args.params, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
