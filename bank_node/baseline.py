"""`bank-node baseline`: the local-only reference model, its policy, and saving it for `score`.

A saved model is a directory in the format the node keeps its global model in
(``global_model.npy`` with the weights, ``global_model.json`` with the policy, the
validation-chosen alert threshold, the digest of the columns it reads and, when features
are normalised, the statistics file beside it), so ``bank-node score --model DIR`` reads
either.

Under a policy with a ``counterparty_sketch`` the baseline reads the feature set's columns
only (`local_only_policy`): the cross-bank columns are the other members' counts, which a
local-only reference is by definition without. What it was trained under says so: the
printed ``inputs`` and ``left_out``, and the saved policy and ``global_model.json``, so
``score`` feeds the saved model the same columns.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.config import ConfigError, NodeConfig
from bank_node.passport import describe_inputs, policy_inputs_version
from bank_node.portal_client import BankClient, PortalError
from bank_node.scoring_model import MODEL_META, MODEL_WEIGHTS
from bank_node.training import (
    LocalData,
    Normalizer,
    evaluate,
    feature_moments,
    model_from_vector,
)
from he.codec import TRAILER_SLOTS
from models.counterparty_sketch import SKETCH_FEATURE_NAMES
from models.feature_sets import feature_set
from models.features import FEATURE_NAMES
from models.nets import FraudMLP, build_model
from models.training import train_local
from models.vector import model_to_vector, vector_length
from protocol import (
    DEFAULT_GATE_ALERT_RATE,
    DEFAULT_SECURE_AGGREGATION,
    MIN_BANKS_FLOOR,
    SERVER_OPT_DEFAULTS,
    PolicySnapshot,
    ProtocolError,
    default_ckks_params,
    default_model_spec,
)

log = logging.getLogger(__name__)

# ``--policy fraud:2``: a policy version on the portal (names are slugs, versions numbers).
POLICY_REFERENCE = re.compile(r"(?P<name>[-a-zA-Z0-9_]+):(?P<version>[0-9]+)")


# The portal's defaults for a new policy (consortium/rounds/models.py, RoundPolicy): what a
# bank trains with when it names no policy and cannot reach the portal.
POLICY_DEFAULTS: dict[str, Any] = {
    "local_epochs": 2,
    "batch_size": 256,
    "learning_rate": 1e-3,
    "fedprox_mu": 0.0,
    "max_rounds": 10,
    "normalize_features": True,
}


@dataclass(frozen=True)
class BaselinePolicy:
    """The policy a baseline trains under, and where it came from (said in the output)."""

    policy: PolicySnapshot
    source: str


def default_policy() -> PolicySnapshot:
    """The protocol's default model under the portal's default policy settings."""
    spec = default_model_spec()
    n_features = len(FEATURE_NAMES)
    return PolicySnapshot(
        name="protocol-defaults",
        version=0,
        model_spec=spec,
        n_features=n_features,
        vector_length=vector_length(build_model(spec, n_features)) + TRAILER_SLOTS,
        min_banks=MIN_BANKS_FLOOR,
        deadline_seconds=1800,
        ckks_params=default_ckks_params(),
        dp_target_epsilon=None,
        dp_delta=1e-5,
        dp_max_grad_norm=1.0,
        dp_noise_multiplier=None,
        secure_aggregation=DEFAULT_SECURE_AGGREGATION,
        aggregate_checkers=0,
        max_bank_share=None,
        update_clip_norm=None,
        gate_tolerance=None,
        gate_alert_rate=DEFAULT_GATE_ALERT_RATE,
        **SERVER_OPT_DEFAULTS,
        **POLICY_DEFAULTS,
    )


def policy_from_file(path: Path) -> PolicySnapshot:
    """A policy snapshot JSON, or a round as ``GET rounds/current`` returns it (its policy)."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--policy {path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"--policy {path} is not JSON: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("policy"), dict):
        raw = raw["policy"]
    return policy_snapshot(raw, path)


def policy_snapshot(raw: object, source: Path) -> PolicySnapshot:
    """A policy snapshot read from a local file, or a ConfigError naming the bad field."""
    try:
        return PolicySnapshot.from_dict(raw)
    except ProtocolError as exc:
        raise ConfigError(f"{source}: not a policy snapshot: {exc}") from exc


def baseline_policy(config: NodeConfig, choice: str | None) -> BaselinePolicy:
    """``--policy`` if given, else the portal's current round's policy, else the defaults."""
    if choice is not None:
        return chosen_policy(config, choice)
    try:
        client = BankClient(
            config.portal_url,
            config.credential,
            timeout=10.0,
            max_retries=0,
            client_cert=config.client_cert,
        )
        rnd = client.current_round()
    except (PortalError, ConfigError) as exc:
        log.warning("baseline: portal not reachable (%s); using the protocol defaults", exc)
        return BaselinePolicy(default_policy(), "protocol defaults (portal not reachable)")
    if rnd is None:
        return BaselinePolicy(default_policy(), "protocol defaults (no round in flight)")
    policy = rnd.policy
    return BaselinePolicy(
        policy, f"portal round {rnd.number} (policy {policy.name} v{policy.version})"
    )


def chosen_policy(config: NodeConfig, choice: str) -> BaselinePolicy:
    """``--policy``: NAME:VERSION fetched from the portal, or a JSON file's path.

    An existing file wins over the NAME:VERSION reading of the same string.
    """
    reference = POLICY_REFERENCE.fullmatch(choice)
    if reference is None or Path(choice).exists():
        return BaselinePolicy(policy_from_file(Path(choice)), f"file {choice}")
    name, version = reference["name"], int(reference["version"])
    policy = policy_from_portal(config, name, version)
    return BaselinePolicy(policy, f"portal policy {name} v{version}")


def policy_from_portal(config: NodeConfig, name: str, version: int) -> PolicySnapshot:
    """Policy ``name`` version ``version`` from the portal, or a ConfigError saying why not."""
    try:
        client = BankClient(config.portal_url, config.credential, timeout=10.0, max_retries=1)
        return client.policy_version(name, version)
    except PortalError as exc:
        if exc.status is None:
            why = f"the portal at {config.portal_url} is not reachable ({exc.message})"
        else:
            why = f"the portal answered {exc.status}: {exc.message}"
        raise ConfigError(
            f"--policy {name}:{version}: {why}. A JSON file path works without the portal"
        ) from exc


def local_only_policy(policy: PolicySnapshot) -> PolicySnapshot:
    """``policy`` as a model of this bank's data alone reads it: its feature set's columns,
    without the cross-bank sketch columns (the other members' counts) it may add."""
    if policy.counterparty_sketch is None:
        return policy
    n_features = feature_set(policy.feature_set).n_features
    length = vector_length(build_model(policy.model_spec, n_features)) + TRAILER_SLOTS
    return replace(policy, counterparty_sketch=None, n_features=n_features, vector_length=length)


def left_out(policy: PolicySnapshot) -> dict[str, Any] | None:
    """What a local-only model of ``policy`` does not read, and why (None: nothing)."""
    if policy.counterparty_sketch is None:
        return None
    return {
        "counterparty_sketch": policy.counterparty_sketch.to_dict(),
        "policy": {"name": policy.name, "version": policy.version, "digest": policy.digest()},
        "why": "the cross-bank sketch columns are the other members' counts, which a "
        "local-only model is trained without; the saved model reads the feature set's "
        "columns only, and `bank-node score --model DIR` feeds it those",
    }


def train_baseline(
    data: LocalData, policy: PolicySnapshot, epochs: int
) -> tuple[FraudMLP, Normalizer | None]:
    """The policy's model trained on this bank's training split alone, and its normaliser."""
    norm = None
    if policy.normalize_features:
        # Alone, a bank can only normalise with its own statistics.
        norm = Normalizer.from_moments(feature_moments(data)[0], 0)
    view = data.normalized(norm)
    model = model_from_vector(policy.model_spec, policy.n_features, None, lr=policy.learning_rate)
    train_local(
        model,
        view.x_train,
        view.y_train,
        epochs=epochs,
        batch_size=policy.batch_size,
        lr=policy.learning_rate,
        seed=0,
    )
    return model, norm


def run_baseline(
    data: LocalData, chosen: BaselinePolicy, epochs: int, save: Path | None
) -> dict[str, Any]:
    """Train, evaluate on the held-out period and, if asked, save; the figures to print.

    A policy's cross-bank sketch columns are left out (`local_only_policy`), and the
    figures say so.
    """
    policy = local_only_policy(chosen.policy)
    dropped = left_out(chosen.policy)
    if dropped is not None:
        log.warning(
            "baseline: policy %s v%s adds %d cross-bank sketch columns, the other members' "
            "counts; the local-only model reads %s",
            chosen.policy.name,
            chosen.policy.version,
            len(SKETCH_FEATURE_NAMES),
            describe_inputs(policy),
        )
    model, norm = train_baseline(data, policy, epochs)
    metrics = evaluate(model, data.normalized(norm))
    if save is not None:
        weights = model_to_vector(model)
        save_model(save, weights, policy, metrics["threshold"], norm, left_out=dropped)
    return {**metrics, "epochs": epochs, "policy_source": chosen.source,
            "inputs": describe_inputs(policy), "feature_set": policy_inputs_version(policy),
            "left_out": dropped, "saved": None if save is None else str(save)}  # fmt: skip


def save_model(
    directory: Path,
    weights: np.ndarray,
    policy: PolicySnapshot,
    threshold: float | None,
    norm: Normalizer | None,
    *,
    left_out: dict[str, Any] | None = None,
) -> None:
    """Write a local-only model in the node's global-model format (``round`` is null).

    ``feature_set`` records the digest of the columns it reads
    (`bank_node.passport.inputs_version`), which loading it checks against its policy's;
    ``left_out``, what of the chosen policy it does not read (`left_out`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / MODEL_WEIGHTS, weights)
    stats_round = None
    if norm is not None:
        stats_round = norm.round_number
        (directory / f"normalization-round-{stats_round}.json").write_text(norm.to_json())
    meta = {"round": None, "model": "local-only", "policy": policy.to_dict(),
            "stats_round": stats_round, "threshold": threshold,
            "feature_set": policy_inputs_version(policy)}  # fmt: skip
    if left_out is not None:
        meta["left_out"] = left_out
    (directory / MODEL_META).write_text(json.dumps(meta, indent=2))


def check_save_target(config: NodeConfig, save: Path) -> None:
    """Refuse to write the local-only model over the node's own global model."""
    if save.resolve() == config.state_dir.resolve():
        raise ConfigError(
            f"--save {save} is this node's state_dir, which holds the global model; "
            "save the local-only model to another directory (e.g. baseline-model/)"
        )
