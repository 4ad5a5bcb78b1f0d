"""Three bank-node processes federate files of one format under a policy's feature set.

Shared by the PaySim and the ULB end-to-end tests: a live portal, a key ceremony, the
founding charter approving the policy, then one statistics round and one training round.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.keys import PARAMS, PUBLIC_CONTEXT, SECRET_CONTEXT, ckks_keygen
from bank_node.portal_client import OperatorClient
from bank_node.scoring_model import load_scoring_model
from bank_node.training import local_data
from he.params import CkksParams
from models.metrics import auprc
from models.training import predict_scores
from simulation import ceremony
from tests.e2e.conftest import ROOT, LivePortal

NODE = (sys.executable, "-m", "bank_node.cli")


def federate(
    portal: LivePortal, work: Path, files: list[Path], feature_set: str, data_format: str
) -> dict[str, Any]:
    """Run the federation to one published training round; return where everything is."""
    params = CkksParams()
    epoch = ckks_keygen(work / "ceremony", params)
    op = OperatorClient(portal.url, "operator", portal.operator_password)
    public = (work / "ceremony" / PUBLIC_CONTEXT).read_bytes()
    op.key_epoch_register(base64.b64encode(public).decode(), params.to_dict())
    policy = op.policy_create(
        name=f"formats-{feature_set}", active=False, min_banks=3, local_epochs=4,
        batch_size=64, learning_rate=1e-2, max_rounds=1, deadline_seconds=600,
        ckks_params=params.to_dict(), feature_set=feature_set,
    )  # fmt: skip
    banks: dict[str, Path] = {}
    founders = []
    for k, csv in enumerate(files, start=1):
        slug = f"{feature_set.split('-')[0]}-bank-{k}"
        bank = ceremony.bank_prepare(work / slug, work / "ceremony", op)
        config = bank.home / "node.toml"
        config.write_text(
            f'portal_url = "{portal.url}"\nbank = "{slug}"\ncredential_file = "credential"\n'
            f'signing_key_file = "signing.key"\nsecret_context_file = "{SECRET_CONTEXT}"\n'
            f'ckks_params_file = "{PARAMS}"\ndata_file = "{csv}"\nstate_dir = "state"\n'
            f'data_format = "{data_format}"\npoll_interval_seconds = 0.5\n'
            f'genesis_file = "{ceremony.GENESIS_FILE}"\n'
        )
        _node("register", config)
        banks[slug] = bank.home
        founders.append(bank)
    draft = ceremony.draft_genesis(
        f"formats-{feature_set}", founders, key_epoch=epoch,
        policies=[ceremony.approval_of(policy)],
    )  # fmt: skip
    genesis = ceremony.found(portal.url, op, founders, draft)
    for bank in founders:
        ceremony.write_genesis(genesis, bank.home / ceremony.GENESIS_FILE)
    op.policy_activate(policy["id"])
    _run_nodes(banks)
    return {"work": work, "banks": banks, "files": dict(zip(banks, files, strict=True)),
            "op": op, "policy": policy}  # fmt: skip


def _node(command: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NODE, command, "--config", str(config), *args],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip


def _run_nodes(banks: dict[str, Path]) -> None:
    procs = [
        subprocess.Popen(
            [*NODE, "run", "--config", str(home / "node.toml"), "--max-rounds", "1"],
            cwd=ROOT,
            stdout=open(home / "node.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        for home in banks.values()
    ]
    for proc in procs:
        assert proc.wait(timeout=800) == 0, [
            (h / "node.log").read_text()[-3000:] for h in banks.values()
        ]


def published_kinds(federation: dict[str, Any]) -> list[tuple[str, list[str], str]]:
    """(kind, banks in its manifest, feature set) of every published round, in order."""
    rounds = sorted(federation["op"].rounds(), key=lambda r: r.number)
    return [
        (r.kind, sorted(r.manifest.banks), r.policy.feature_set)
        for r in rounds
        if r.state == "published" and r.manifest is not None
    ]


def held_out_auprc(federation: dict[str, Any], feature_set: str) -> tuple[float, float]:
    """The published model's AUPRC on every bank's held-out rows pooled, and their base rate."""
    labels, scores = [], []
    for slug, home in federation["banks"].items():
        model = load_scoring_model(home / "state")
        data = local_data(federation["files"][slug], features=feature_set)
        scores.append(predict_scores(model.net, model.normalise(data.x_test)))
        labels.append(data.y_test)
    y = np.concatenate(labels)
    return float(auprc(y, np.concatenate(scores))), float(y.mean())


def score_with_cli(federation: dict[str, Any]) -> list[list[str]]:
    """`bank-node score` of each bank's own file with the published model: the output rows."""
    outputs = []
    for slug, home in federation["banks"].items():
        out = federation["work"] / f"{slug}-scores.csv"
        csv = federation["files"][slug]
        _node("score", home / "node.toml", "--input", str(csv), "--out", str(out))
        outputs.append(out.read_text().splitlines())
    return outputs
