"""`bank-node`: the command line of a bank's node."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bank_node import (
    config_reference,
    personalise_cli,
    registry_cli,
    roster_cli,
    serve_cli,
    train_worker_cli,
)
from bank_node.config import KEY_FIELDS, ConfigError, NodeConfig, files_check, load_config
from bank_node.config_training import FEATURE_ENGINES
from protocol import DEFAULT_CKKS_PARAMS

if TYPE_CHECKING:
    from bank_node.keys import Keyring

log = logging.getLogger("bank_node")


def _config(args: argparse.Namespace) -> NodeConfig:
    return load_config(Path(args.config))


def agent_from_config(config: NodeConfig) -> Any:
    """The node as `bank-node run` builds it: keys, portal client and the pinned roster."""
    import torch

    from bank_node.agent import Agent
    from bank_node.portal_client import BankClient
    from bank_node.scratch import scratch_sweep

    torch.set_num_threads(max(1, config.torch_threads))
    scratch_sweep()  # what earlier runs of this node killed with SIGKILL left in /dev/shm
    keys = node_keyring(config)
    client = BankClient(
        config.portal_url,
        config.credential,
        timeout=config.request_timeout_seconds,
        max_retries=config.max_retries,
        client_cert=config.client_cert,
    )
    return Agent(config, keys, client, _keeper(config, keys, client))


def node_keyring(config: NodeConfig) -> Keyring:
    """The node's keys, after checking that every key file the config names exists."""
    from bank_node.keys import keyring_load

    files_check(config, "credential_file", *KEY_FIELDS)
    return keyring_load(
        config.secret_context_file,
        config.ckks_params_file,
        config.signing_key_file,
        config.previous_key_dirs,
    )


def _keeper(config: NodeConfig, keys: Any, client: Any) -> Any:
    """The pinned, verified roster; None (said loudly, every start) without genesis_file."""
    from bank_node import metrics as node_metrics
    from bank_node.objections import Objector
    from bank_node.roster import RosterKeeper
    from he.signing import public_key_b64

    if config.genesis_file is None:
        if not config.allow_unpinned_roster:
            raise ConfigError(
                "genesis_file is not set: this node would believe the portal about members, "
                "keys and policies. Set genesis_file to the signed genesis your bank received "
                "out of band (bank-node roster sign-genesis); allow_unpinned_roster = true "
                "exists only for a test consortium"
            )
        log.warning(
            "NO ROSTER PINNED: genesis_file is not set, so this node believes the portal about "
            "members, keys and policies; set genesis_file to the signed genesis your bank "
            "received out of band"
        )
        node_metrics.roster_pinned(None)
        return None
    config.state_dir.mkdir(parents=True, exist_ok=True)
    keeper = RosterKeeper(config.genesis_file, config.state_dir)
    mine = public_key_b64(keys.signing_key)
    if keeper.state.signing_key_of(config.bank) != mine:
        # A bank admitted after the genesis learns of its membership from later versions.
        consortium = keeper.state.consortium_id
        keeper.refresh(client, Objector(client, config.bank, keys.signing_key, lambda: consortium))
    keeper.check_names(config.bank, mine)
    log.info("roster pinned: version %d verified", keeper.state.version)
    return keeper


def cmd_keygen(args: argparse.Namespace) -> int:
    from bank_node.keys import ckks_keygen
    from he.params import CkksParams

    params = CkksParams(
        args.poly_modulus_degree, tuple(args.coeff_mod_bit_sizes), args.global_scale_bits
    )
    fp = ckks_keygen(Path(args.out_dir), params)
    print(
        json.dumps(
            {
                "fingerprint": fp,
                "ckks_params": params.to_dict(),
                "secret_context": str(Path(args.out_dir) / "consortium.secret"),
                # Members only, with the secret context; never to the portal.
                "integrity_key": str(Path(args.out_dir) / "integrity.key"),
                "public_context": str(Path(args.out_dir) / "consortium.pub"),
            },
            indent=2,
        )
    )
    return 0


def cmd_signing_keygen(args: argparse.Namespace) -> int:
    from bank_node.keys import agreement_keygen, signing_keygen

    out = Path(args.out_dir)
    # Both public keys go into the roster: the signing key for uploads and roster
    # signatures, the X25519 key for pairwise secrets of secure aggregation.
    keys = {"public_key": signing_keygen(out), "agreement_key": agreement_keygen(out)}
    print(json.dumps(keys))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from bank_node.portal_client import BankClient
    from he.signing import public_key_b64

    config = _config(args)
    keys = node_keyring(config)
    client = BankClient(
        config.portal_url,
        config.credential,
        max_retries=config.max_retries,
        client_cert=config.client_cert,
    )
    bank = client.register_signing_key(public_key_b64(keys.signing_key))
    epoch = client.key_epoch()
    matches = epoch.fingerprint == keys.fingerprint
    print(
        json.dumps(
            {
                "bank": bank.slug,
                "status": bank.status,
                "key_epoch": epoch.fingerprint,
                "key_installed": matches,
            },
            indent=2,
        )
    )
    if not matches:
        print(
            f"error: the portal's key epoch {epoch.fingerprint[:16]}... is not the "
            f"consortium key in {config.secret_context_file}",
            file=sys.stderr,
        )
        return 2
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bank_node.data import check_header

    config = _config(args)
    check_header(config.data_file, config.data_format)  # a wrong file fails now, not at round one
    agent = agent_from_config(config)
    if config.metrics_port:
        from bank_node import drift_metrics
        from bank_node.metrics import start_metrics_server

        start_metrics_server(
            config.metrics_port,
            bank=config.bank,
            state_dir=config.state_dir,
            data_file=config.data_file,
        )
        drift_metrics.watch(config.state_dir)  # what `score` records of drift
    agent.run(max_rounds=args.max_rounds, idle_exit_seconds=args.idle_exit_seconds)
    return 0


def cmd_train_once(args: argparse.Namespace) -> int:
    from bank_node.data import check_header

    config = _config(args)
    check_header(config.data_file, config.data_format)  # as `run` does
    agent = agent_from_config(config)
    agent.run(max_rounds=len(agent.state.evaluated) + 1, idle_exit_seconds=args.timeout)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    """Local-only reference: the same model trained on this bank's data alone."""
    import torch

    from bank_node.baseline import baseline_policy, check_save_target, run_baseline
    from bank_node.training import local_data

    config = _config(args)
    save = Path(args.save) if args.save else None
    if save is not None:
        check_save_target(config, save)
    torch.set_num_threads(max(1, config.torch_threads))
    chosen = baseline_policy(config, args.policy)
    log.info("baseline: policy from %s; split: %s", chosen.source, config.evaluation.describe())
    policy = chosen.policy
    epochs = args.epochs or policy.local_epochs * policy.max_rounds
    data = local_data(config.data_file, config.evaluation, policy.feature_set, config.data_format)
    print(json.dumps(run_baseline(data, chosen, epochs, save)))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score transactions with the newest global model this node evaluated (or --model)."""
    from bank_node.drift_state import drift_counter, drift_save
    from bank_node.features_duckdb import EngineSettings
    from bank_node.score_stream import score_input
    from bank_node.scoring_model import load_scoring_model
    from bank_node.sketch_scoring import node_sketch_source

    config = _config(args)
    state = Path(args.model) if args.model else config.state_dir
    # A sketch policy's model reads the sketch rounds the node keeps, keyed by its keys.
    sketches = node_sketch_source(config)
    model = load_scoring_model(state, hint=_no_model_hint(args.model), sketches=sketches)
    work = Path(args.work_dir) if args.work_dir else config.state_dir / "score-work"
    settings = EngineSettings(memory_limit=args.memory_limit, temp_directory=work)
    # Drift is the node's own record: kept only when scoring against its state dir.
    counts = None if args.model else drift_counter(state, model.round)
    summary = score_input(
        model, Path(args.input), Path(args.out), settings=settings, reasons=args.reasons,
        drift=counts, engine=args.engine or config.training.engine,
    )  # fmt: skip
    drift = None
    if counts is not None and model.round is not None and summary.rows:
        drift = drift_save(state, model.round, counts.drift())
    print(
        json.dumps(
            {
                "rows": summary.rows,
                "alerts": summary.alerts,
                "threshold": model.threshold,
                "global_model_round": model.round,
                "model": model.label,
                "model_version": model.model_version,
                "out": args.out,
                "drift": drift,
            }
        )
    )
    return 0


def _reason_count(text: str) -> int:
    if not text.isdigit():  # digits only: a whole number, 0 or more
        raise argparse.ArgumentTypeError(f"expected a whole number 0 or more, got {text!r}")
    return int(text)


def _no_model_hint(model: str | None) -> str:
    if model:
        return "not a directory written by `bank-node baseline --save DIR`"
    return (
        "this node has not evaluated a published global model yet (run `bank-node run` or "
        "`train-once` first, or score a local-only model: `bank-node baseline --save DIR`, "
        "then `score --model DIR`)"
    )


def _baseline_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--policy",
        metavar="NAME:VERSION|FILE",
        help="a policy version on the portal (e.g. fraud:2), or a JSON file: a policy snapshot "
        "or a round's JSON (GET /api/v1/rounds/current) whose policy is used. Optional: "
        "without it, the policy of the portal's current round when the portal answers, else "
        "the protocol defaults; the output's policy_source says which",
    )
    c.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="training epochs (default: the policy's local_epochs x max_rounds, the epochs "
        "a bank trains through a whole federation)",
    )
    c.add_argument(
        "--save",
        metavar="DIR",
        help="save the local-only model to DIR in the node's global-model format, for "
        "`bank-node score --model DIR`",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bank-node", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    config_reference.add_parser(sub)

    k = sub.add_parser(
        "keygen",
        help="key ceremony: the consortium's CKKS secret/public contexts and integrity key",
    )
    k.add_argument("--out-dir", required=True)
    ckks = DEFAULT_CKKS_PARAMS
    k.add_argument("--poly-modulus-degree", type=int, default=ckks["poly_modulus_degree"])
    k.add_argument(
        "--coeff-mod-bit-sizes", type=int, nargs="+", default=list(ckks["coeff_mod_bit_sizes"])
    )
    k.add_argument("--global-scale-bits", type=int, default=ckks["global_scale_bits"])
    k.set_defaults(func=cmd_keygen)

    s = sub.add_parser(
        "signing-keygen", help="this bank's Ed25519 signing and X25519 key-agreement key pairs"
    )
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=cmd_signing_keygen)

    for name, func, helptext in [
        ("register", cmd_register, "register the signing key and check the key epoch"),
        ("run", cmd_run, "poll the portal and take part in rounds"),
        ("train-once", cmd_train_once, "take part in one round and evaluate its aggregate"),
        ("baseline", cmd_baseline, "train and evaluate on local data only"),
    ]:
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--config", required=True, help="node configuration (TOML)")
        c.set_defaults(func=func)
        if name == "run":
            c.add_argument(
                "--max-rounds",
                type=int,
                default=0,
                help="exit after evaluating this many rounds (0: never)",
            )
            c.add_argument("--idle-exit-seconds", type=float, default=0)
        if name == "train-once":
            c.add_argument("--timeout", type=float, default=3600)
        if name == "baseline":
            _baseline_arguments(c)

    roster_cli.add_parser(sub)
    personalise_cli.add_parser(sub)
    registry_cli.add_parser(sub)

    sc = sub.add_parser("score", help="score transactions with the current global model")
    sc.add_argument("--config", required=True, help="node configuration (TOML)")
    sc.add_argument(
        "--input",
        required=True,
        help="transactions: a CSV (IBM AML, PaySim or ULB), a Parquet file of normalised "
        "columns, or a directory of them (scored in bounded memory)",
    )
    sc.add_argument("--memory-limit", default="2GB", help="the feature engine's memory ceiling")
    sc.add_argument("--engine", choices=FEATURE_ENGINES, default=None,
                    help="feature engine (default: the config's [training] engine)")  # fmt: skip
    sc.add_argument(
        "--work-dir",
        metavar="DIR",
        help="where intermediate files and spills go (default: state_dir/score-work)",
    )
    sc.add_argument(
        "--out",
        required=True,
        help="where to write line,score,alert,model_version,reasons: Parquet when the name "
        "ends in .parquet, else CSV",
    )
    sc.add_argument(
        "--model",
        metavar="DIR",
        help="a model saved by `bank-node baseline --save DIR` (default: the newest global "
        "model, in state_dir)",
    )
    reasons = "the top N reasons, in plain words, of each alerting row (0: none; default 3)"
    sc.add_argument("--reasons", type=_reason_count, default=3, metavar="N", help=reasons)
    sc.set_defaults(func=cmd_score)
    serve_cli.add_parser(sub)
    train_worker_cli.add_parser(sub)

    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    from bank_node.data import DataError
    from bank_node.portal_client import PortalError
    from he.errors import HEError

    try:
        return int(args.func(args))
    except (ConfigError, DataError, HEError, PortalError, FileExistsError, OSError) as exc:
        print(f"bank-node {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
