"""Published aggregates as models this bank may use: download, check, decrypt, average.

``PublishedModels`` is the agent's source of every global model it trains from or adopts
(a round's base, a statistics round's normalisation, a published round to evaluate). An
aggregate is used only after every check: its manifest against the verified roster, its
bytes against the manifest, the v2 record (and a recomputed sum when chosen), the
integrity slot after decryption, then the model itself (``bank_node.aggregate_guard``).
A refusal is remembered in the node's state, so a refused round is never fetched again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bank_node import metrics as node_metrics
from bank_node.aggregate_guard import Expected, check_global_model, check_moments, initial_weights
from bank_node.checks import Refused, check_aggregate_file, check_manifest
from bank_node.config import NodeConfig
from bank_node.counts import round_count_unit
from bank_node.gate_checks import check_gate_counts
from bank_node.keys import Keyring
from bank_node.portal_client import BankClient
from bank_node.secagg_steps import SecAggSteps
from bank_node.server_chain import Produced, ServerChain
from bank_node.sketch_round import check_sketch_sum, round_spec
from bank_node.state import NodeState, aggregate_file, state_file
from bank_node.training import Normalizer
from governance import RosterState
from he.codec import decrypt_vector
from he.errors import HEError, UpdateInvalid
from he.integrity import AggregateRejected, check_aggregate
from protocol import RoundInfo

log = logging.getLogger("bank_node")


class PublishedModels:
    """Checked global models of published rounds, for one node.

    ``state`` returns the node's state (its ``refused`` record is kept here), saved to
    ``state_path`` on every refusal; ``roster`` the verified roster (None: unpinned).
    """

    def __init__(
        self,
        config: NodeConfig,
        keys: Keyring,
        client: BankClient,
        secagg: SecAggSteps,
        roster: Callable[[], RosterState | None],
        state: Callable[[], NodeState],
    ) -> None:
        self.config = config
        self.keys = keys
        self.client = client
        self.secagg = secagg
        self._roster = roster
        self._state = state
        self.chain = ServerChain(config.state_dir, self._base_average)

    @property
    def roster(self) -> RosterState | None:
        return self._roster()

    @property
    def state(self) -> NodeState:
        return self._state()

    @property
    def state_path(self) -> Path:
        return state_file(self.config.state_dir)

    def count_unit(self, rnd: RoundInfo) -> int:
        """The rows one count unit of ``rnd`` stands for (``bank_node.counts``)."""
        norm = self.normalizer(rnd.stats_round) if rnd.is_training else None
        return round_count_unit(rnd, norm.rows if norm is not None else None)

    def normalizer(self, stats_round: int | None) -> Normalizer | None:
        """The consortium-wide normalisation of a published statistics round (cached)."""
        if stats_round is None:
            return None
        path = self.config.state_dir / f"normalization-round-{stats_round}.json"
        if (cached := _cached_normalizer(path)) is not None and cached.rows:
            return cached  # a cache without the row count predates count units: redone
        moments, total = self.global_weights(stats_round, self.keys.fingerprint)
        # The node keeps the consortium total with its normalizer: the bound on later counts.
        norm = Normalizer.from_moments(moments, stats_round, rows=int(total))
        path.write_text(norm.to_json())
        return norm

    def base_weights(self, rnd: RoundInfo) -> np.ndarray | None:
        """The round's starting point: None for initial weights, else the base's model."""
        if rnd.base_round is None:
            return None
        return self.produced(rnd.base_round, rnd.base_key_epoch or "").weights

    def produced(self, number: int, epoch: str, *, against_base: bool = True) -> Produced:
        """The model training round ``number`` produces at this node: its checked average
        after the policy's server optimiser (``bank_node.server_chain``; FedAvg: the average).
        """
        weights, _, info = self.checked(number, epoch, against_base=against_base)
        return self.chain.produced(info, weights)

    def counted_in_chain(self, rnd: RoundInfo, bank: str, number: int) -> bool:
        """Whether round ``number`` is one of the bases ``rnd`` builds on (its base, that
        round's base, ...) and its verified manifest sums ``bank``'s update."""
        base = rnd.base_round
        while base is not None and base > number:
            base = self.client.round(base).base_round
        if base != number:  # aborted, refused by the gate, disputed: no base of rnd's
            return False
        info = self.client.round(number)
        check_manifest(self.roster, info, info.manifest, self.config.guardrails)
        return info.manifest is not None and bank in info.manifest.banks

    def _base_average(self, number: int, epoch: str) -> tuple[np.ndarray, RoundInfo]:
        """A base round's checked average, for the server optimiser's chain."""
        weights, _, info = self.checked(number, epoch, against_base=False)
        return weights, info

    def global_weights(
        self, number: int, epoch: str, *, against_base: bool = True
    ) -> tuple[np.ndarray, float]:
        """The checked average of a published aggregate and its rows (``checked``)."""
        weights, rows, _ = self.checked(number, epoch, against_base=against_base)
        return weights, rows

    def checked(
        self, number: int, epoch: str, *, against_base: bool = True
    ) -> tuple[np.ndarray, float, RoundInfo]:
        """Download (once), check, decrypt and average a published aggregate.

        Raises ``Refused`` (counted as a refused aggregate) when the manifest names
        anything the verified roster does not hold, the bytes are not the aggregate it
        names, or the plaintext is not the sum of the manifest's banks' updates for this
        round (``he.integrity``), or the model is not one this bank adopts
        (``bank_node.aggregate_guard``; ``against_base`` False skips the distance to its
        base, for a base itself, so that checking a round decrypts at most its base too);
        nothing of it is used then.
        """
        if str(number) in self.state.refused:  # refused once: not fetched or counted again
            raise Refused("aggregate_integrity", self.state.refused[str(number)])
        try:
            return self._checked_aggregate(number, epoch, against_base)
        except Refused as exc:
            log.error("round %s: aggregate refused, keeping the last good model: %s", number, exc)
            node_metrics.aggregate_refused()
            self.state.refused[str(number)] = exc.message
            self.state.save(self.state_path)
            raise

    def _checked_aggregate(
        self, number: int, epoch: str, against_base: bool
    ) -> tuple[np.ndarray, float, RoundInfo]:
        info = self.client.round(number)
        check_manifest(self.roster, info, info.manifest, self.config.guardrails)
        assert info.manifest is not None  # check_manifest refuses a round without one
        path = aggregate_file(self.config.state_dir, number)
        if info.policy.masked:  # before a byte is decrypted: the record, and maybe the sum
            self.secagg.check_published(info, info.manifest, path)
        if not path.exists():
            self.client.download_aggregate(number, path)
        try:
            check_aggregate_file(path, info.manifest)
        except Refused:
            path.unlink(missing_ok=True)
            raise
        epoch = info.key_epoch or epoch
        try:
            summed = self.decrypt_aggregate(path, epoch, masked=info.policy.masked)
            key = self.keys.integrity_for(epoch)
            unit = self.count_unit(info)
            weights, rows = check_aggregate(summed, info.manifest.banks, key, epoch, number, unit)
        except AggregateRejected as exc:
            raise Refused("aggregate_integrity", str(exc)) from exc
        except HEError as exc:  # e.g. no key for its epoch, a statistics total not finite
            raise Refused("aggregate_unusable", f"round {number}: {exc}") from exc
        if info.is_training:
            check_global_model(self.expected(info, unit, against_base), weights, rows)
        elif info.is_evaluation:  # counts of rows per score bin, not a model
            check_gate_counts(number, weights)
        elif info.is_sketch:  # counterparty sketches, not a model
            check_sketch_sum(number, weights, round_spec(info))
        else:
            check_moments(number, weights, info.policy.n_features)
        return weights, rows, info

    def expected(self, info: RoundInfo, unit: int, against_base: bool) -> Expected:
        """What ``info``'s model must be: the policy's, within the consortium total and rails."""
        policy, limit = info.policy, self.config.guardrails.max_update_ratio
        norm = self.normalizer(info.stats_round)
        previous = None
        if against_base and (limit is not None or policy.update_clip_norm is not None):
            previous = self.previous_model(info)
        return Expected(
            info.number,
            policy.model_spec,
            policy.n_features,
            n_banks=len(info.manifest.inputs) if info.manifest else 0,
            count_unit=unit,
            consortium_rows=norm.rows if norm is not None else None,
            previous=previous,
            max_update_ratio=limit,
            clip_norm=policy.update_clip_norm,
        )

    def previous_model(self, info: RoundInfo) -> np.ndarray:
        """The model ``info`` was trained from: its base round's, or the initial weights."""
        policy = info.policy
        if info.base_round is None:
            return initial_weights(info.number, policy.model_spec, policy.n_features)
        epoch = info.base_key_epoch or info.key_epoch
        return self.produced(info.base_round, epoch, against_base=False).weights

    def decrypt_aggregate(self, path: Path, epoch: str, *, masked: bool = False) -> np.ndarray:
        """Decrypt a downloaded aggregate; a malformed one is refused like a forged one."""
        if masked:
            with node_metrics.DECRYPT_SECONDS.time():
                return self.secagg.decrypt(path, epoch)
        ctx, params = self.keys.for_epoch(epoch)
        with open(path, "rb") as stream, node_metrics.DECRYPT_SECONDS.time():
            try:
                return decrypt_vector(ctx, stream, params)
            except UpdateInvalid as exc:
                raise AggregateRejected(f"the aggregate could not be decrypted: {exc}") from exc


def _cached_normalizer(path: Path) -> Normalizer | None:
    """The normalisation cached on disk; None when absent or unreadable (then recomputed)."""
    try:
        return Normalizer.from_json(path.read_text()) if path.exists() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s unreadable, recomputing it: %s", path, exc)
        return None
