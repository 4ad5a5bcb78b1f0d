"""Local work on the bank's own data: features, splits, training and evaluation."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from bank_node import metrics as node_metrics
from bank_node.config import Evaluation
from bank_node.data import load_transactions
from bank_node.splits import low_positive_warning, split_frame
from models.feature_sets import DEFAULT_FEATURE_SET, feature_set
from models.metrics import auprc, f1_at, f1_best_threshold, recall_at_budget
from models.nets import FraudMLP, build_model
from models.training import predict_scores, train_local
from models.vector import model_to_vector, vector_to_model
from protocol import PolicySnapshot

if TYPE_CHECKING:
    from models.privacy import DPConfig

log = logging.getLogger(__name__)
DEFAULT_EVALUATION = Evaluation()


@dataclass(frozen=True)
class LocalData:
    """The bank's transactions as feature matrices: train, validation and test.

    Split by time (60/20/20 of the span) or by the dates of the node's ``[evaluation]``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def normalized(self, norm: Normalizer | None) -> LocalData:
        """The same splits with consortium-wide normalisation applied (or unchanged)."""
        if norm is None:
            return self
        return dataclasses.replace(
            self,
            x_train=norm.apply(self.x_train),
            x_val=norm.apply(self.x_val),
            x_test=norm.apply(self.x_test),
        )


# A feature that barely varies anywhere is left near zero rather than blown up.
MIN_STD = 1e-3


@dataclass(frozen=True)
class Normalizer:
    """Consortium-wide feature standardisation from a statistics round."""

    mean: np.ndarray
    std: np.ndarray
    round_number: int
    rows: int = 0  # the consortium's rows in the statistics round (0: not from one)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    @classmethod
    def from_moments(cls, moments: np.ndarray, round_number: int, rows: int = 0) -> Normalizer:
        """From the decrypted, count-averaged ``[E[x], E[x^2]]`` of all banks."""
        n_features = moments.size // 2
        mean, second = moments[:n_features], moments[n_features:]
        std = np.sqrt(np.maximum(second - mean**2, 0.0))
        return cls(mean, np.maximum(std, MIN_STD), round_number, rows)

    def to_json(self) -> str:
        return json.dumps(
            {
                "round": self.round_number,
                "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "rows": self.rows,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        raw = json.loads(text)
        rows = int(raw.get("rows", 0))
        return cls(np.asarray(raw["mean"]), np.asarray(raw["std"]), int(raw["round"]), rows)


def feature_moments(data: LocalData) -> tuple[np.ndarray, int]:
    """Per-feature ``[E[x], E[x^2]]`` over the training split, and its row count.

    Sent as ``[(n/U) E[x], (n/U) E[x^2], n/U, tag]`` with ``U = he.codec.STATS_COUNT_UNIT``
    rows, so the portal's sum gives the pooled moments, a bank with 100 million rows fits,
    and no bank's own statistics or size are ever visible.
    """
    x = data.x_train.astype(np.float64)
    return np.concatenate([x.mean(axis=0), (x**2).mean(axis=0)]), int(x.shape[0])


@functools.lru_cache(maxsize=2)
def local_data(
    path: Path,
    evaluation: Evaluation = DEFAULT_EVALUATION,
    features: str = DEFAULT_FEATURE_SET,
    data_format: str = "auto",
) -> LocalData:
    """The bank's file as the feature set ``features``, split as ``evaluation`` says.

    Warns on few test positives. A set whose columns the file lacks raises ValueError
    naming them (the agent refuses such a round first: ``checks.check_feature_set``).
    """
    spec = feature_set(features)
    frame = load_transactions(path, data_format=data_format)
    if missing := spec.missing(frame.columns):
        raise ValueError(f"{path}: feature set {spec.name!r} needs columns {missing}")
    parts = split_frame(frame, evaluation, path)
    # Features are computed on the whole history (strictly as-of), then split, so the
    # first held-out rows still see the account history that precedes them.
    matrix = spec.compute(frame)
    labels = frame["label"].to_numpy(dtype=np.float32)
    index = [frame.index.get_indexer(p.index) for p in parts]
    tr, va, te = index
    data = LocalData(matrix[tr], labels[tr], matrix[va], labels[va], matrix[te], labels[te])
    check_test_positives(data, evaluation, path)
    return data


def check_test_positives(data: LocalData, evaluation: Evaluation, source: Path | str) -> bool:
    """Log a warning and set the metric when the test period has too few positives.

    Returns True when the count is below ``evaluation.min_test_positives``.
    """
    positives = int(data.y_test.sum())
    warning = low_positive_warning(positives, evaluation, source)
    node_metrics.test_positives(positives, low=warning is not None)
    if warning is not None:
        log.warning(warning)
    return warning is not None


def model_from_vector(
    spec: dict[str, Any],
    n_features: int,
    weights: np.ndarray | None,
    lr: float = 1e-3,
    fedprox_mu: float = 0.0,
) -> FraudMLP:
    """The policy's model, at ``weights`` (or at the spec's deterministic initial weights)."""
    model = build_model({**spec, "lr": lr, "fedprox_mu": fedprox_mu}, n_features)
    if weights is not None:
        vector_to_model(model, weights)
    return model


def round_start(
    policy: PolicySnapshot, base: np.ndarray | None, correction: np.ndarray | None = None
) -> FraudMLP:
    """The policy's model at the round's base, with FedProx anchored there when asked, and
    ``correction`` (FedDyn's ``-h_k``: ``bank_node.feddyn``) added to every gradient."""
    model = model_from_vector(
        policy.model_spec,
        policy.n_features,
        base,
        lr=policy.learning_rate,
        fedprox_mu=policy.fedprox_mu,
    )
    if policy.fedprox_mu > 0:
        model.set_fedprox_reference(model_to_vector(model))
    if correction is not None:
        model.set_control_correction(correction)
    return model


class _LocalFit(TypedDict):
    """The policy's local-training settings, as ``train_local`` and ``train_local_dp`` take them."""

    epochs: int
    batch_size: int
    lr: float


def _local_fit(policy: PolicySnapshot) -> _LocalFit:
    return {
        "epochs": policy.local_epochs,
        "batch_size": policy.batch_size,
        "lr": policy.learning_rate,
    }


def train_round(
    data: LocalData,
    policy: PolicySnapshot,
    base: np.ndarray | None,
    seed: int,
    correction: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Train from ``base`` for the policy's local epochs; return (weights, sample count)."""
    model = round_start(policy, base, correction)
    n = train_local(model, data.x_train, data.y_train, seed=seed, **_local_fit(policy))
    return model_to_vector(model), n


def train_round_private(
    data: LocalData,
    policy: PolicySnapshot,
    base: np.ndarray | None,
    accountant: dict[str, Any] | None,
    dp: DPConfig,
) -> tuple[np.ndarray, int, float, dict[str, Any]]:
    """DP-SGD (Opacus) for the policy's local epochs, continuing the bank's accountant.

    Returns (weights, samples, cumulative epsilon, new accountant state). Raises
    PrivacyBudgetExceeded, before touching the model, when this round would overspend.
    The noise is seeded from the operating system, never from anything another party knows.
    """
    # Imported here, not at the top: Opacus is heavy and only a DP round needs it.
    from models.privacy import train_local_dp

    model = round_start(policy, base)
    n, epsilon, state = train_local_dp(
        model,
        data.x_train,
        data.y_train,
        seed=None,
        dp=dp,
        accountant_state=accountant,
        **_local_fit(policy),
    )
    return model_to_vector(model), n, epsilon, state


def evaluate(model: FraudMLP, data: LocalData) -> dict[str, float | None]:
    """Held-out metrics; the threshold for F1 is chosen on the validation split."""
    return metrics_from_scores(
        data.y_val,
        predict_scores(model, data.x_val),
        data.y_test,
        predict_scores(model, data.x_test),
    )


def metrics_from_scores(
    y_val: np.ndarray, val_scores: np.ndarray, y_test: np.ndarray, scores: np.ndarray
) -> dict[str, float | None]:
    """`evaluate`'s figures from a model's scores of the validation and test rows.

    The rows must be in time order (ties in file order): recall at the budget takes equal
    scores in row order. A streaming node computes the scores batch by batch
    (``bank_node.stream_periods``) and calls this too.
    """
    threshold, _ = f1_best_threshold(y_val, val_scores)
    return {
        "auprc": _finite(auprc(y_test, scores)),
        "recall_at_0.5pct": _finite(recall_at_budget(y_test, scores, 0.005)),
        "f1": _finite(f1_at(y_test, scores, threshold)),
        "base_rate": float(np.mean(y_test)) if y_test.size else None,
        "threshold": _finite(threshold),
        "test_rows": float(y_test.size),
    }


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
