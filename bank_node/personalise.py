"""`bank-node personalise`: this bank's own fine-tuned copy of the consortium's model.

The node takes the model it serves (the newest evaluated global model, or the registry's
promoted version), tries the ways of fine-tuning in `models.personalise` on its own
training rows and keeps the one that scores best on its own *validation* rows; only then is
the held-out test period scored, for the global model and the personalised one alike, with
the same figures the node reports for a round (`bank_node.training.evaluate`). Nothing
leaves the bank: no portal call, no upload.

The rows are exactly the ones a scorer would feed the model: its feature set, plus the
cross-bank sketch columns for a ``counterparty_sketch`` policy (read from the kept sketch
round, as `bank-node score` does), normalised by the model's own statistics round.

``--save DIR`` writes the personalised model in the node's model format (the served
model's description, ``"model": "personalised"``, the threshold chosen on validation, and
which fine-tuning won), so `bank-node score --model DIR` and `serve` can use it. It never
writes over the node's state directory, which holds the consortium's model.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.config import ConfigError, NodeConfig
from bank_node.data import load_transactions
from bank_node.model_files import MODEL_META, MODEL_WEIGHTS
from bank_node.scoring_model import ScoringModel, load_scoring_model
from bank_node.sketch_scoring import node_sketch_source
from bank_node.splits import split_frame
from bank_node.training import LocalData, check_test_positives, evaluate
from models.nets import FraudMLP
from models.personalise import personalise
from models.vector import model_to_vector

NO_MODEL_HINT = (
    "this node has evaluated no global model yet; run `bank-node run` until a training "
    "round is published (or point --model at a model directory)"
)


def model_rows(config: NodeConfig, model: ScoringModel) -> LocalData:
    """The bank's file as ``model``'s own inputs, split by the node's ``[evaluation]`` and
    normalised as the model was trained: what every scorer would feed it."""
    frame = load_transactions(config.data_file, data_format=config.data_format)
    if "label" not in frame.columns:
        raise ConfigError(f"{config.data_file}: no label column; fine-tuning needs labels")
    parts = split_frame(frame, config.evaluation, config.data_file)
    try:
        matrix = model.features(frame)
    except ValueError as exc:
        raise ConfigError(f"{config.data_file}: {exc}") from exc
    labels = frame["label"].to_numpy(dtype=np.float32)
    tr, va, te = (frame.index.get_indexer(p.index) for p in parts)
    data = LocalData(matrix[tr], labels[tr], matrix[va], labels[va], matrix[te], labels[te])
    check_test_positives(data, config.evaluation, config.data_file)
    return data.normalized(model.normalizer)


def run_personalise(
    config: NodeConfig, source: Path | None = None, save: Path | None = None
) -> dict[str, Any]:
    """Fine-tune the served model (or the one in ``source``); the figures to print.

    Returns the global and the personalised model's held-out figures, the fine-tuning
    chosen and every candidate's validation AUPRC. A ConfigError names what is missing.
    """
    if save is not None:
        check_personal_target(config, save)
    directory = source or config.state_dir
    hint = "" if source is not None else NO_MODEL_HINT
    model = load_scoring_model(directory, hint=hint, sketches=node_sketch_source(config))
    if not isinstance(model.net, FraudMLP):
        raise ConfigError(f"{model.source}: only the MLP the policies train can be fine-tuned")
    data = model_rows(config, model)
    if data.y_train.size == 0 or data.y_val.size == 0:
        raise ConfigError(
            f"{config.data_file}: the [evaluation] split leaves no training or validation "
            "rows to fine-tune and choose on"
        )
    global_figures = evaluate(model.net, data)
    chosen = personalise(
        model.net,
        (data.x_train, data.y_train),
        (data.x_val, data.y_val),
        batch_size=model.policy.batch_size,
        seed=0,
    )
    figures = evaluate(chosen.model, data)
    if save is not None:
        save_personal(save, model, chosen.model, figures["threshold"], chosen.choice.name)
    return {
        "round": model.round,
        "version": model.model_version,
        "choice": chosen.choice.name,
        # NaN (a validation period without a positive) is written as null, as in `evaluate`.
        "val_auprc": {k: v if math.isfinite(v) else None for k, v in chosen.val_auprc.items()},
        "global": global_figures,
        "personalised": figures,
        "saved": None if save is None else str(save),
    }


def check_personal_target(config: NodeConfig, save: Path) -> None:
    """Refuse to write the personalised model over the node's state (its global model)."""
    target, state = save.resolve(), config.state_dir.resolve()
    if target == state or state in target.parents:
        raise ConfigError(
            f"--save {save} lies in this node's state_dir, which holds the consortium's "
            "model and registry; save the personalised model elsewhere (e.g. personal-model/)"
        )


def save_personal(
    directory: Path, served: ScoringModel, net: FraudMLP, threshold: float | None, choice: str
) -> None:
    """The personalised model in the node's model format, described as the served one was.

    The description keeps the served model's round, policy, statistics round, key epoch
    and recorded inputs (so loading it checks the same things), with ``model`` set to
    ``"personalised"``, its own threshold, and where it came from.
    """
    meta = json.loads((served.source / MODEL_META).read_text())
    meta.update(
        model="personalised",
        threshold=threshold,
        personalised={"from": str(served.source), "version": served.model_version,
                      "choice": choice},
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    stats = meta.get("stats_round")
    if stats is not None:
        name = f"normalization-round-{stats}.json"
        shutil.copyfile(served.source / name, directory / name)
    np.save(directory / MODEL_WEIGHTS, model_to_vector(net))
    (directory / MODEL_META).write_text(json.dumps(meta, indent=2))
