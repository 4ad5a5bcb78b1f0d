"""What a node contributes to a round: its local update, bounded, packed and encrypted.

A mixin of ``bank_node.agent.Agent``: its steps stay methods of the agent, so that a test
node (``tests/e2e/malicious_node.py``) overrides one of them and keeps the others.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bank_node import metrics as node_metrics
from bank_node.aggregate_guard import initial_weights
from bank_node.config import NodeConfig
from bank_node.counts import pack_checked
from bank_node.feddyn import OwnDrift, uses_feddyn
from bank_node.gate import EvaluationGate
from bank_node.global_models import PublishedModels
from bank_node.influence import bound_update
from bank_node.keys import Keyring
from bank_node.secagg_steps import SecAggSteps
from bank_node.sketch_round import SketchRounds
from bank_node.state import NodeState, dp_config
from bank_node.training import (
    LocalData,
    Normalizer,
    feature_moments,
    train_round,
    train_round_private,
)
from bank_node.training_stream import check_streamable, node_moments, node_train_round
from he.codec import encrypt_to_file
from he.integrity import tag_value
from models.privacy import PrivacyBudgetExceeded, epsilon_after, would_exceed
from protocol import CohortKeys, PrivacyClaim, RoundInfo


class UpdateSteps:
    """Local update, influence bound, packing and encryption of one round's contribution."""

    config: NodeConfig
    keys: Keyring
    state: NodeState
    state_path: Path
    gate: EvaluationGate
    sketches: SketchRounds
    secagg: SecAggSteps
    models: PublishedModels

    def round_data(self, rnd: RoundInfo) -> LocalData:
        """The data of ``rnd``'s policy, as the agent reads it."""
        raise NotImplementedError

    def local_update(self, rnd: RoundInfo) -> tuple[np.ndarray, int, PrivacyClaim | None]:
        """Feature moments (statistics), score histograms (evaluation) or trained weights.

        The third value is the privacy claim sent with the upload (None without DP).
        """
        if rnd.is_evaluation:  # scores, no training: no privacy spend to claim
            histograms, n = self.gate.contribution(rnd)
            return histograms, n, None
        if rnd.is_sketch:  # noised counterparty sketches (bank_node/sketch_round.py)
            return (*self.sketches.contribution(rnd), None)
        streams = self.config.training.streams  # [training] data = "stream"
        if streams:
            check_streamable(rnd.policy)
        if not rnd.is_training:
            moments, n = (
                node_moments(self.config) if streams else feature_moments(self.round_data(rnd))
            )
            return moments, n, None
        policy = rnd.policy
        base = self.base_weights(rnd)
        if policy.dp_enabled and not streams:  # streamed, train_round_stream refuses DP
            data = self.round_data(rnd).normalized(self.normalizer(rnd.stats_round))
            return self.private_update(rnd, data, base)
        drift, own = self.own_drift(rnd, base)
        correction = -own[0] if own is not None else None
        if streams:
            norm = self.normalizer(rnd.stats_round)
            weights, n = node_train_round(self.config, policy, base, rnd.number, norm, correction)
        else:
            data = self.round_data(rnd).normalized(self.normalizer(rnd.stats_round))
            weights, n = train_round(data, policy, base, rnd.number, correction)
        if drift is not None and own is not None:  # FedDyn: h_k from this round's own step
            drift.after_round(rnd, own[0], weights, own[1])
        return (*self.bound(rnd, weights, n, base), None)

    def own_drift(
        self, rnd: RoundInfo, base: np.ndarray | None
    ) -> tuple[OwnDrift | None, tuple[np.ndarray, np.ndarray] | None]:
        """Under FedDyn, the bank's state file and (``h_k``, the weights it trains from)."""
        if not uses_feddyn(rnd.policy):
            return None, None
        policy, drift = rnd.policy, OwnDrift(self.config.state_dir)
        if base is None:
            base = initial_weights(rnd.number, policy.model_spec, policy.n_features)
        counted = functools.partial(self.models.counted_in_chain, rnd, self.config.bank)
        return drift, (drift.before_round(rnd, base.size, counted), base)

    def private_update(
        self, rnd: RoundInfo, data: LocalData, base: np.ndarray | None
    ) -> tuple[np.ndarray, int, PrivacyClaim]:
        """DP-SGD within the policy's privacy budget; the spend is saved before the upload."""
        policy = rnd.policy
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
        # Clipping after DP-SGD is post-processing: the privacy claim stands.
        claim = PrivacyClaim(epsilon=epsilon, budget_left=budget_left)
        return (*self.bound(rnd, weights, n, base), claim)

    def bound(
        self, rnd: RoundInfo, weights: np.ndarray, n: int, base: np.ndarray | None
    ) -> tuple[np.ndarray, int]:
        """The policy's clip norm and share cap on this update (``bank_node.influence``)."""
        norm = self.normalizer(rnd.stats_round)
        bounded = bound_update(rnd, weights, n, base, norm.rows if norm is not None else None)
        return bounded.weights, bounded.rows

    def pack(self, rnd: RoundInfo, weights: np.ndarray, n: int) -> np.ndarray:
        """Tag the update and pack it in the round's count unit; HEError if it cannot fit."""
        tag = tag_value(
            self.keys.integrity_key, self.keys.fingerprint, rnd.number, self.config.bank
        )
        unit = self.count_unit(rnd)
        return pack_checked(rnd, weights, n, tag, unit, self.keys.params)

    # --- published models (bank_node/global_models.py) ------------------------------------

    def count_unit(self, rnd: RoundInfo) -> int:
        return self.models.count_unit(rnd)

    def normalizer(self, stats_round: int | None) -> Normalizer | None:
        return self.models.normalizer(stats_round)

    def base_weights(self, rnd: RoundInfo) -> np.ndarray | None:
        return self.models.base_weights(rnd)

    def global_weights(self, number: int, epoch: str) -> tuple[np.ndarray, float]:
        return self.models.global_weights(number, epoch)

    def encrypt(
        self, rnd: RoundInfo, values: np.ndarray, cohort: CohortKeys | None = None
    ) -> tuple[str, Path]:
        """Mask-encrypt the packed update (v2) towards ``cohort``, or encrypt it (v1)."""
        number = rnd.number
        path = self.config.state_dir / f"update-round-{number}.ckks"
        if self.config.keep_plaintext_updates:
            np.save(self.config.state_dir / f"plain-round-{number}.npy", values)
        if cohort is not None:  # times its masks and its encryption apart
            return self.secagg.encrypt(rnd, values, cohort)
        with node_metrics.ENCRYPT_SECONDS.time():
            digest = encrypt_to_file(
                self.keys.secret_context, values, self.keys.params, self.keys.fingerprint, path
            )
        return digest, path
