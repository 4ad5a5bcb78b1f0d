"""The node's round logic: join, train, encrypt, sign, upload; decrypt, evaluate, report."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bank_node import metrics as node_metrics
from bank_node.config import NodeConfig
from bank_node.keys import Keyring
from bank_node.portal_client import BankClient, PortalError
from bank_node.training import (
    LocalData,
    Normalizer,
    evaluate,
    feature_moments,
    local_data,
    model_from_vector,
    train_round,
    train_round_private,
)
from he.codec import check_headroom, decrypt_vector, encrypt_to_file, pack_update
from he.errors import HEError, UpdateInvalid
from he.integrity import AggregateRejected, check_aggregate, tag_value
from he.signing import sign, update_message
from models.privacy import DPConfig, PrivacyBudgetExceeded, epsilon_after, would_exceed
from protocol import PolicySnapshot, PrivacyClaim, RoundInfo

log = logging.getLogger("bank_node")

MAX_BANKS_PER_SUM = 256  # must not exceed the portal's CONSORTIUM_MAX_BANKS_PER_ROUND


@dataclass
class NodeState:
    """What the node remembers across restarts (in ``state_dir/state.json``)."""

    submitted: dict[str, str] = field(default_factory=dict)  # round -> digest
    evaluated: dict[str, dict[str, Any]] = field(default_factory=dict)  # round -> metrics
    skipped: dict[str, str] = field(default_factory=dict)  # round -> reason
    refused: dict[str, str] = field(default_factory=dict)  # aggregate's round -> reason
    # Differential privacy: Opacus's RDP history across rounds, and the epsilon it implies.
    dp_accountant: dict[str, Any] | None = None
    epsilon: float | None = None

    @classmethod
    def load(cls, path: Path) -> NodeState:
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))
        tmp.replace(path)


def dp_config(policy: PolicySnapshot) -> DPConfig:
    """The DP-SGD settings of a policy, its budget planned over ``max_rounds`` rounds."""
    return DPConfig(
        target_epsilon=policy.dp_target_epsilon,
        delta=policy.dp_delta,
        max_grad_norm=policy.dp_max_grad_norm,
        noise_multiplier=policy.dp_noise_multiplier,
        planned_rounds=policy.max_rounds,
        local_epochs=policy.local_epochs,
        batch_size=policy.batch_size,
    )


class Agent:
    def __init__(self, config: NodeConfig, keys: Keyring, client: BankClient) -> None:
        self.config = config
        self.keys = keys
        self.client = client
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = config.state_dir / "state.json"
        self.state = NodeState.load(self.state_path)
        node_metrics.set_privacy_spent(self.state.epsilon or 0.0)  # as of the last DP round

    @property
    def data(self) -> LocalData:
        return local_data(self.config.data_file)

    # --- one poll ------------------------------------------------------------------

    def step(self) -> None:
        """Do whatever is due now: join the open round, evaluate newly published ones."""
        current = self.client.current_round()
        if current is not None and current.state == "open":
            node_metrics.round_seen_open(current.number)
            self.participate(current)
        for rnd in self.client.rounds(limit=5):
            key = str(rnd.number)
            node_metrics.round_listed(
                rnd.number,
                rnd.state,
                submitted=key in self.state.submitted,
                skipped=key in self.state.skipped,
            )
            if (
                rnd.state == "published"
                and rnd.is_training
                and key in self.state.submitted
                and key not in self.state.evaluated
                and key not in self.state.refused
            ):
                try:
                    self.evaluate_published(rnd)
                except AggregateRejected:
                    pass  # logged, counted and remembered by aggregate_refused

    def participate(self, rnd: RoundInfo) -> bool:
        """Train on the round's base and upload; False when the node must sit this one out."""
        key = str(rnd.number)
        if key in self.state.submitted or key in self.state.skipped:
            return False
        if rnd.key_epoch != self.keys.fingerprint:
            reason = (
                f"round {key} uses key epoch {rnd.key_epoch[:16]}..., this node holds "
                f"{self.keys.fingerprint[:16]}...; install the current consortium key"
            )
            log.error(reason)
            self.state.skipped[key] = reason
            self.state.save(self.state_path)
            return False
        started = time.monotonic()
        try:
            weights, n, privacy = self.local_update(rnd)
        except (HEError, PrivacyBudgetExceeded) as exc:
            # e.g. the base aggregate is under a key epoch this node never held
            log.error("round %s: sitting out: %s", key, exc)
            self.state.skipped[key] = str(exc)
            self.state.save(self.state_path)
            return False
        log.info("round %s: update over %d rows in %.1fs", key, n, time.monotonic() - started)
        node_metrics.local_update_done(rnd.kind, time.monotonic() - started)
        digest, path = self.encrypt(rnd.number, weights, n)
        signature = sign(
            self.keys.signing_key, update_message(rnd.number, self.config.bank, digest)
        )
        self.client.upload_update(rnd.number, path, digest, signature, privacy=privacy)
        node_metrics.uploaded(path)
        path.unlink(missing_ok=True)
        self.state.submitted[key] = digest
        self.state.save(self.state_path)
        log.info("round %s: uploaded %s", key, digest[:16])
        return True

    def local_update(self, rnd: RoundInfo) -> tuple[np.ndarray, int, PrivacyClaim | None]:
        """Feature moments for a statistics round; trained weights for a training round.

        The third value is the privacy claim sent with the upload (None without DP).
        """
        if not rnd.is_training:
            moments, n = feature_moments(self.data)
            return moments, n, None
        policy = rnd.policy
        data = self.data.normalized(self.normalizer(rnd.stats_round))
        base = self.base_weights(rnd)
        if not policy.dp_enabled:
            weights, n = train_round(data, policy, base, seed=rnd.number)
            return weights, n, None
        dp = dp_config(policy)
        rows = int(data.y_train.size)
        if would_exceed(self.state.dp_accountant, dp, n_samples=rows):
            spent = epsilon_after(self.state.dp_accountant, dp.delta)
            raise PrivacyBudgetExceeded(
                f"privacy budget: another round would take epsilon from {spent:.3f} past the "
                f"policy's {dp.target_epsilon:g}; this bank stops contributing"
            )
        weights, n, epsilon, accountant = train_round_private(
            data, policy, base, self.state.dp_accountant, dp
        )
        # Saved before the upload: a crash then a retrain counts the spend twice, which is
        # the safe direction.
        self.state.dp_accountant, self.state.epsilon = accountant, epsilon
        self.state.save(self.state_path)
        node_metrics.set_privacy_spent(epsilon)
        budget_left = not would_exceed(accountant, dp, n_samples=rows)
        return weights, n, PrivacyClaim(epsilon=epsilon, budget_left=budget_left)

    def encrypt(self, number: int, weights: np.ndarray, n: int) -> tuple[str, Path]:
        tag = tag_value(self.keys.integrity_key, self.keys.fingerprint, number, self.config.bank)
        values = pack_update(weights, n, tag)
        check_headroom(values, self.keys.params, MAX_BANKS_PER_SUM)
        path = self.config.state_dir / f"update-round-{number}.ckks"
        if self.config.keep_plaintext_updates:
            np.save(self.config.state_dir / f"plain-round-{number}.npy", values)
        with node_metrics.ENCRYPT_SECONDS.time():
            digest = encrypt_to_file(
                self.keys.secret_context, values, self.keys.params, self.keys.fingerprint, path
            )
        return digest, path

    def normalizer(self, stats_round: int | None) -> Normalizer | None:
        """The consortium-wide normalisation of a published statistics round (cached)."""
        if stats_round is None:
            return None
        path = self.config.state_dir / f"normalization-round-{stats_round}.json"
        if path.exists():
            return Normalizer.from_json(path.read_text())
        moments, _total = self.global_weights(stats_round, self.keys.fingerprint)
        norm = Normalizer.from_moments(moments, stats_round)
        path.write_text(norm.to_json())
        return norm

    def base_weights(self, rnd: RoundInfo) -> np.ndarray | None:
        """The round's starting point: None for initial weights, else the decrypted base."""
        if rnd.base_round is None:
            return None
        weights, _ = self.global_weights(rnd.base_round, rnd.base_key_epoch or "")
        return weights

    def global_weights(self, number: int, epoch: str) -> tuple[np.ndarray, float]:
        """Download (once), decrypt, check and average a published aggregate.

        Raises AggregateRejected, after ``aggregate_refused``, when the plaintext is not
        the sum of the manifest's banks' updates for this round; nothing is used then.
        """
        if str(number) in self.state.refused:  # refused once: not re-checked nor re-counted
            raise AggregateRejected(self.state.refused[str(number)])
        path = self.config.state_dir / f"aggregate-round-{number}.ckks"
        if not path.exists():
            self.client.download_aggregate(number, path)
        manifest = self.client.round(number).manifest
        try:
            summed = self.decrypt_aggregate(path, epoch)
            if manifest is None:
                raise AggregateRejected(f"round {number} has no manifest to check against")
            key = self.keys.integrity_for(epoch)
            return check_aggregate(summed, manifest.banks, key, epoch, number)
        except AggregateRejected as exc:
            self.aggregate_refused(number, exc)
            raise

    def decrypt_aggregate(self, path: Path, epoch: str) -> np.ndarray:
        """Decrypt a downloaded aggregate; a malformed one is refused like a forged one."""
        ctx, params = self.keys.for_epoch(epoch)
        with open(path, "rb") as stream, node_metrics.DECRYPT_SECONDS.time():
            try:
                return decrypt_vector(ctx, stream, params)
            except UpdateInvalid as exc:
                raise AggregateRejected(f"the aggregate could not be decrypted: {exc}") from exc

    def aggregate_refused(self, number: int, exc: AggregateRejected) -> None:
        """Log, count and remember a refused aggregate; the last good model stays in use."""
        log.error("round %s: aggregate refused, keeping the last good model: %s", number, exc)
        node_metrics.aggregate_refused()
        self.state.refused[str(number)] = str(exc)
        self.state.save(self.state_path)
        # objection: once the roster checks land, send a signed objection here.

    def evaluate_published(self, rnd: RoundInfo) -> dict[str, Any]:
        weights, _total = self.global_weights(rnd.number, rnd.key_epoch)
        policy = rnd.policy
        model = model_from_vector(policy.model_spec, policy.n_features, weights)
        stats_round = rnd.stats_round
        metrics = evaluate(model, self.data.normalized(self.normalizer(stats_round)))
        threshold = metrics.pop("threshold", None)
        if self.state.epsilon is not None:
            metrics["epsilon"] = self.state.epsilon
        np.save(self.config.state_dir / "global_model.npy", weights)
        (self.config.state_dir / "global_model.json").write_text(
            json.dumps(
                {
                    "round": rnd.number,
                    "policy": policy.to_dict(),
                    "stats_round": stats_round,
                    "threshold": threshold,
                },
                indent=2,
            )
        )
        try:
            self.client.report_metrics(rnd.number, metrics)
        except PortalError as exc:
            log.warning("round %s: metrics not reported: %s", rnd.number, exc.message)
        self.state.evaluated[str(rnd.number)] = metrics
        self.state.save(self.state_path)
        node_metrics.global_model_evaluated(rnd.number, metrics)
        log.info(
            "round %s: global model AUPRC %.4f on local held-out data",
            rnd.number,
            metrics["auprc"] or float("nan"),
        )
        return metrics

    # --- loops ---------------------------------------------------------------------

    def run(self, *, max_rounds: int = 0, idle_exit_seconds: float = 0) -> None:
        """Poll until stopped, or until ``max_rounds`` rounds were evaluated."""
        last_activity = time.monotonic()
        while True:
            before = (len(self.state.submitted), len(self.state.evaluated))
            try:
                self.step()
            except PortalError as exc:
                node_metrics.POLL_ERRORS.inc()
                log.warning("portal: %s", exc)
            if (len(self.state.submitted), len(self.state.evaluated)) != before:
                last_activity = time.monotonic()
            if max_rounds and len(self.state.evaluated) >= max_rounds:
                return
            if idle_exit_seconds and time.monotonic() - last_activity > idle_exit_seconds:
                log.info("no activity for %.0fs; exiting", idle_exit_seconds)
                return
            time.sleep(self.config.poll_interval_seconds)
