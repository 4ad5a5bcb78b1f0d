"""The multi-bank demo: a live portal, one node process per bank, real HTTP, CKKS rounds.

It ends with serving: the first bank promotes the federated model and scores a few of its
held-out transactions through `bank-node serve` (``simulation.demo_serve``).
Run with ``make demo`` (or ``python -m simulation.demo``). Everything it makes stays in
``demo-output/`` for inspection: the portal's SQLite database and blobs, every bank's
keys, data, state and logs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bank_node.data import DataError
from bank_node.keys import (
    PARAMS,
    PUBLIC_CONTEXT,
    SECRET_CONTEXT,
    ckks_keygen,
)
from bank_node.portal_client import OperatorClient, PortalError
from he.params import CkksParams
from protocol import MIN_BANKS_FLOOR, MIN_BANKS_FLOOR_TEXT
from simulation import ceremony
from simulation.datadir import (
    DataDirError,
    add_data_arguments,
    bank_files,
    check_data_arguments,
    evaluation_table,
    inside,
    load_manifest,
    slug_of,
)
from simulation.demo_policy import add_policy_arguments, policy_fields
from simulation.demo_results import baseline_results, personalised_results, report
from simulation.demo_serve import report_serving, serve_demo
from simulation.processes import (
    PY,
    ROOT,
    PortalOptions,
    Processes,
    free_port,
    portal_env,
    prepare_database,
    start_portal,
)
from simulation.world import generate_world

NODE_RUN = (PY, "-m", "bank_node.cli", "run")


def start_demo_portal(work: Path, procs: Processes, port: int, password: str) -> str:
    """The portal on SQLite in ``work/portal``, two workers; its URL once it is ready."""
    env = portal_env(work / "portal", CONSORTIUM_LOG_LEVEL="INFO")
    (work / "portal").mkdir(parents=True, exist_ok=True)
    prepare_database(env, password)
    options = PortalOptions(timeout=300, multiproc_dir=work / "portal" / "prometheus")
    return start_portal(procs, env, port, options).url


def write_node_config(
    bank_dir: Path, url: str, slug: str, data_file: Path, evaluation: str = ""
) -> Path:
    config = bank_dir / "node.toml"
    # The demo's banks opt in to reporting their held-out figures (report_metrics), so that
    # the portal's pages have something to show; a real bank decides for itself.
    config.write_text(
        f'portal_url = "{url}"\nbank = "{slug}"\n'
        'credential_file = "credential"\nsigning_key_file = "signing.key"\n'
        f'secret_context_file = "{SECRET_CONTEXT}"\nckks_params_file = "{PARAMS}"\n'
        f'data_file = "{data_file}"\nstate_dir = "state"\npoll_interval_seconds = 1\n'
        f'genesis_file = "{ceremony.GENESIS_FILE}"\nreport_metrics = true\n'
        "torch_threads = 1\n" + evaluation
    )
    return config


def run(args: argparse.Namespace) -> int:
    work = Path(args.out).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.monotonic()
    _, files = _bank_data(work, args)

    print("[demo] key ceremony: one consortium CKKS key and integrity key, shared by the banks")
    params = CkksParams()
    fingerprint = ckks_keygen(work / "ceremony", params)

    procs = Processes()
    try:
        port = free_port()
        password = base64.urlsafe_b64encode(os.urandom(18)).decode()
        url = start_demo_portal(work, procs, port, password)
        print(f"[demo] portal on {url} (SQLite in {work / 'portal'}), scheduler running")
        op = OperatorClient(url, "operator", password)
        op.key_epoch_register(
            base64.b64encode((work / "ceremony" / PUBLIC_CONTEXT).read_bytes()).decode(),
            params.to_dict(),
        )
        policy = op.policy_create(**policy_fields(args, params.to_dict()))
        (work / "policy.json").write_text(json.dumps(policy, indent=2))
        print(
            f"[demo] key epoch {fingerprint[:16]}... registered; policy demo v{policy['version']}"
            f" ({args.rounds} rounds, {args.local_epochs} local epochs, min_banks "
            f"{policy['min_banks']})"
        )

        evaluation = evaluation_table(args.train_before, args.evaluate_from)
        banks = [_bank_setup(work, op, url, path, evaluation) for path in files]
        _govern(work, op, url, banks, fingerprint, policy)
        nodes = [
            (
                bank.slug,
                config,
                procs.start(
                    bank.slug,
                    [*NODE_RUN, "--config", str(config), "--max-rounds", str(args.rounds)],
                    dict(os.environ),
                    bank.home / "node.log",
                ),
            )
            for bank, config in banks
        ]
        print(f"[demo] {len(nodes)} bank nodes running; waiting for {args.rounds} rounds")
        _wait_nodes(nodes, op, args)
        rounds = [r.to_dict() for r in op.rounds()]
        (work / "policy-snapshot.json").write_text(json.dumps(rounds[0]["policy"], indent=2))
        baselines = {} if args.skip_baselines else baseline_results(work, nodes, args)
        personal = {} if args.skip_personalised else personalised_results(nodes)
        serving = serve_demo(nodes[0][0], nodes[0][1], procs)
    finally:
        procs.stop_all()

    report(work, nodes, rounds, baselines, personal)
    report_serving(serving, work)
    print(
        f"[demo] finished in {time.monotonic() - started:.0f}s; portal database, blobs and "
        f"logs kept in {work}"
    )
    return 0


def _bank_data(work: Path, args: argparse.Namespace) -> tuple[dict[str, Any] | None, list[Path]]:
    """The banks' files: a generated world, or the consortium's own (``--data-dir``)."""
    if args.data_dir is None:
        print(f"[demo] generating a synthetic world of {args.banks} banks in {work / 'data'}")
        manifest = generate_world(
            work / "data", n_banks=args.banks, preset=args.preset, seed=args.seed
        )
        return manifest, sorted((work / "data").glob("bank_*.csv"))
    files = bank_files(Path(args.data_dir).resolve())
    if len(files) < MIN_BANKS_FLOOR:
        raise DataDirError(
            f"{args.data_dir} holds {len(files)} bank file(s); the demo needs at least "
            f"{MIN_BANKS_FLOOR}: {MIN_BANKS_FLOOR_TEXT}"
        )
    print(f"[demo] {len(files)} banks' own files from {args.data_dir} (--banks, --preset unused)")
    return load_manifest(Path(args.data_dir)), [f.path for f in files]


def _bank_setup(
    work: Path, op: OperatorClient, url: str, data_file: Path, evaluation: str
) -> tuple[ceremony.Bank, Path]:
    """One bank: the consortium key bundle, its own keys, an API account, its node config."""
    bank = ceremony.bank_prepare(work / "banks" / slug_of(data_file), work / "ceremony", op)
    config = write_node_config(bank.home, url, bank.slug, data_file, evaluation)
    subprocess.run(
        [PY, "-m", "bank_node.cli", "register", "--config", str(config)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return bank, config


def _govern(
    work: Path,
    op: OperatorClient,
    url: str,
    banks: list[tuple[ceremony.Bank, Path]],
    fingerprint: str,
    policy: dict[str, Any],
) -> None:
    """The founders sign the charter; with four banks or more, they admit the last one."""
    members = [bank for bank, _ in banks]
    founders = members[:-1] if len(members) > MIN_BANKS_FLOOR else members
    draft = ceremony.draft_genesis(
        "demo-consortium",
        founders,
        key_epoch=fingerprint,
        policies=[ceremony.approval_of(policy)],
    )
    genesis = ceremony.found(url, op, founders, draft)
    for bank in members:
        ceremony.write_genesis(genesis, bank.home / ceremony.GENESIS_FILE)
    print(
        f"[demo] founding ceremony: {', '.join(b.slug for b in founders)} signed the charter "
        f"(rule 2/3 of members, min_banks {MIN_BANKS_FLOOR}, key epoch and policy approved)"
    )
    if len(founders) < len(members):
        newcomer = members[-1]
        approvers = founders  # more than the rule needs (2 of 3): every founder checks it
        _, state = ceremony.approve_change(
            url,
            op,
            ceremony.verify_genesis(genesis),
            ceremony.AdmitBank(newcomer.member()),
            approvers,
            subject=newcomer,
        )
        print(
            f"[demo] roster v{state.version}: {newcomer.slug} admitted, approved by "
            f"{', '.join(b.slug for b in approvers)} and signed by {newcomer.slug} itself"
        )
    op.policy_activate(policy["id"])
    (work / "genesis.json").write_text((members[0].home / ceremony.GENESIS_FILE).read_text())


def _wait_nodes(nodes: list[Any], op: OperatorClient, args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    seen: set[tuple[int, str]] = set()
    while any(p.poll() is None for _, _, p in nodes):
        if time.monotonic() > deadline:
            raise RuntimeError(f"rounds did not finish within {args.timeout}s; see the logs")
        try:
            for rnd in sorted((r.to_dict() for r in op.rounds()), key=lambda r: r["number"]):
                if (rnd["number"], rnd["state"]) not in seen:
                    seen.add((rnd["number"], rnd["state"]))
                    print(
                        f"[demo]   round {rnd['number']}: {rnd['state']} "
                        f"({rnd['submissions']} encrypted updates)"
                    )
        except PortalError:
            pass
        time.sleep(1)
    failed = [slug for slug, _, p in nodes if p.returncode != 0]
    if failed:
        raise RuntimeError(f"bank nodes failed: {', '.join(failed)}; see their node.log")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(ROOT / "demo-output"))
    p.add_argument("--banks", type=int, default=4)
    p.add_argument("--preset", default="demo")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=int, default=900)
    add_policy_arguments(p)
    add_data_arguments(p)
    p.add_argument(
        "--skip-baselines",
        action="store_true",
        help="skip the local-only baselines (benchmarks compute their own)",
    )
    p.add_argument(
        "--skip-personalised",
        action="store_true",
        help="skip each bank's fine-tuned model (`bank-node personalise`)",
    )
    args = p.parse_args(argv)
    check_data_arguments(p, args)
    if args.banks < MIN_BANKS_FLOOR:
        p.error(f"--banks must be at least {MIN_BANKS_FLOOR}: {MIN_BANKS_FLOOR_TEXT}")
    if args.data_dir is not None and inside(Path(args.data_dir), Path(args.out)):
        p.error("--data-dir must not lie inside --out, which the demo empties first")
    try:
        return run(args)
    except (DataDirError, DataError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
