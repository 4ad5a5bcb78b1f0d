"""`bank-node train-worker`: its arguments; the worker itself is `bank_node.train_worker`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("bank_node.train_worker")


def cmd_train_worker(args: argparse.Namespace) -> int:
    """Wait for the node's training sessions and take part in each, until told to stop."""
    # The ML stack loads only for this sub-command.
    from bank_node.train_worker import serve_sessions, worker_from_env

    session_dir = Path(args.session_dir)
    worker = worker_from_env(session_dir, args.num_nodes, args.devices, args.pod_index_env)
    log.info("NODE_RANK %d of %d waiting for training sessions in %s",
             worker.node_rank, worker.num_nodes, worker.session_dir)  # fmt: skip
    serve_sessions(worker, max_sessions=args.max_sessions,
                   idle_exit_seconds=args.idle_exit_seconds, poll=args.poll_seconds)  # fmt: skip
    return 0


def _devices(value: str) -> int | str:
    if value == "auto" or (value.isdigit() and int(value) >= 1):
        return value if value == "auto" else int(value)
    raise argparse.ArgumentTypeError(f'a whole number >= 1 or "auto", not {value!r}')


def add_parser(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "train-worker",
        help="one more machine of this bank's training (NODE_RANK >= 1; no keys, no portal)",
        description="Set NODE_RANK (1, 2, ...), MASTER_ADDR and MASTER_PORT as for Lightning; "
        "docs/scale.md, 'Several machines'.",
    )
    w.add_argument("--session-dir", required=True,
                   help="the node's [training] session_dir, as mounted here")  # fmt: skip
    w.add_argument("--num-nodes", type=int, required=True,
                   help="the node's [training] num_nodes")  # fmt: skip
    w.add_argument("--devices", type=_devices, default=1,
                   help="the node's [training] devices (default 1)")  # fmt: skip
    w.add_argument("--pod-index-env", metavar="NAME",
                   help="NODE_RANK is 1 + the number in this environment variable (a "
                   "StatefulSet's pod index); default: read NODE_RANK")  # fmt: skip
    w.add_argument("--max-sessions", type=int, default=0,
                   help="exit after taking part in N sessions (0: never)")  # fmt: skip
    w.add_argument("--idle-exit-seconds", type=float, default=0,
                   help="exit after this long without a session (0: never)")  # fmt: skip
    w.add_argument("--poll-seconds", type=float, default=1.0,
                   help="how often to look for a new session")  # fmt: skip
    w.set_defaults(func=cmd_train_worker)
