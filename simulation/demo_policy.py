"""The demo's round policy: its flags, their defaults, and the fields ``policy_create`` gets."""

from __future__ import annotations

import argparse
import json
from typing import Any

from protocol import MIN_BANKS_FLOOR, SERVER_OPTIMIZERS

# Bounded influence (docs/robustness.md): no bank weighs more than half the consortium's
# rows, and no bank's step is longer than 6.0 (L2), above every honest step measured on
# the demo's worlds (at most 4.95, in the first training round; benchmarks/update_norms.py).
DEMO_MAX_BANK_SHARE = 0.5
DEMO_UPDATE_CLIP_NORM = 6.0
# The evaluation gate: a candidate at most 0.02 AUPRC below the current model is adopted.
DEMO_GATE_TOLERANCE = 0.02


def _off_or_float(text: str) -> float | None:
    return None if text == "off" else float(text)


def add_policy_arguments(p: argparse.ArgumentParser) -> None:
    """The policy's flags (the rounds' count and deadline, training, DP, bounded influence)."""
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--deadline", type=int, default=300, help="round deadline in seconds")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--fedprox-mu", type=float, default=0.0)
    p.add_argument(
        "--server-optimizer",
        choices=SERVER_OPTIMIZERS,
        default="fedavg",
        help="what every node does with the decrypted average (feddyn: alpha = --fedprox-mu; "
        "docs/server-optimisers.md)",
    )
    p.add_argument(
        "--model-spec",
        default='{"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce", "pos_weight": 10}',
        help="model spec JSON (see models.nets.build_model)",
    )
    p.add_argument(
        "--dp-epsilon",
        type=float,
        default=None,
        help="train with DP-SGD to this epsilon per bank (default: no DP)",
    )
    p.add_argument(
        "--max-bank-share",
        type=_off_or_float,
        default=DEMO_MAX_BANK_SHARE,
        help="largest share of the consortium's rows one bank weighs ('off': no cap)",
    )
    p.add_argument(
        "--update-clip-norm",
        type=_off_or_float,
        default=DEMO_UPDATE_CLIP_NORM,
        help="L2 clip norm of each bank's step ('off': none; docs/robustness.md)",
    )
    p.add_argument(
        "--gate-tolerance",
        type=_off_or_float,
        default=DEMO_GATE_TOLERANCE,
        help="evaluation gate: largest AUPRC loss a candidate may show and be adopted "
        "('off': no gate, no evaluation rounds; docs/robustness.md)",
    )


def policy_fields(args: argparse.Namespace, ckks_params: dict[str, Any]) -> dict[str, Any]:
    """What the operator's ``policy_create`` gets for the demo (inactive until approved)."""
    return {
        "name": "demo",
        "active": False,  # active only once the banks have approved it in the charter
        "min_banks": MIN_BANKS_FLOOR,
        "local_epochs": args.local_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "fedprox_mu": args.fedprox_mu,
        "server_optimizer": args.server_optimizer,
        "dp_target_epsilon": args.dp_epsilon,
        "model_spec": json.loads(args.model_spec),
        "max_rounds": args.rounds,
        "deadline_seconds": args.deadline,
        "ckks_params": ckks_params,
        "max_bank_share": args.max_bank_share,
        "update_clip_norm": args.update_clip_norm,
        "gate_tolerance": args.gate_tolerance,
    }
