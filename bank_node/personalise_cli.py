"""`bank-node personalise`: fine-tune the served model on this bank's rows (no portal call).

The work is in `bank_node.personalise`; this module only parses, so that `bank-node --help`
loads no ML stack.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bank_node.config import load_config


def cmd_personalise(args: argparse.Namespace) -> int:
    import torch

    from bank_node.personalise import run_personalise

    config = load_config(Path(args.config))
    torch.set_num_threads(max(1, config.torch_threads))
    source = Path(args.model) if args.model else None
    save = Path(args.save) if args.save else None
    print(json.dumps(run_personalise(config, source, save)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "personalise",
        help="fine-tune the consortium's model on this bank's own rows, chosen on its "
        "validation rows, and compare both on the held-out period",
    )
    p.add_argument("--config", required=True, help="node configuration (TOML)")
    p.add_argument(
        "--model",
        metavar="DIR",
        help="the model to start from (default: state_dir, the model this node serves)",
    )
    p.add_argument(
        "--save",
        metavar="DIR",
        help="save the personalised model to DIR in the node's model format, for "
        "`bank-node score --model DIR` (never inside state_dir)",
    )
    p.set_defaults(func=cmd_personalise)
