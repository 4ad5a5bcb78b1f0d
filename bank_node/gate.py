"""The evaluation gate at a node: score a candidate, decide from the consortium's sum, verify bases.

docs/robustness.md, "The evaluation gate". In an evaluation round E the node decrypts the
candidate (E's ``candidate_round``) and the model it would replace (E's base, or the
policy's initial model), both through ``PublishedModels`` and so through every check an
aggregate passes, scores both on its **validation** rows and sends the four score
histograms packed like a statistics round. When E publishes it decrypts the sum, decides
with ``models.gate.gate_decide``, signs a ``GateVerdict`` and posts it. Before it trains
from a base under a gated policy it needs its own adopt verdict for that base, and the
model it serves is the newest one it adopted itself: it never takes the portal's word.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from bank_node import metrics as node_metrics
from bank_node.checks import Refused, file_sha256
from bank_node.config import NodeConfig
from bank_node.drift_state import drift_reference_keep, drift_reference_save
from bank_node.gate_checks import check_candidate, check_evaluation_round
from bank_node.global_models import PublishedModels
from bank_node.portal_client import BankClient, PortalError
from bank_node.registry_node import NodeRegistry
from bank_node.state import (
    NodeState,
    aggregate_file,
    keep_candidate,
    save_global_model,
    serve_candidate,
    state_file,
)
from bank_node.training import LocalData, model_from_vector
from bank_node.training_stream import held_out, node_drift_reference
from governance import RosterState
from governance.verdict import GateVerdict, figure, sign_verdict
from he.errors import HEError
from models.gate import GateOutcome, gate_decide, gate_vector
from models.training import predict_scores
from protocol import RoundInfo

log = logging.getLogger("bank_node")


class EvaluationGate:
    """One node's part in the gate; ``state``, ``roster`` and ``data`` are read when used."""

    def __init__(
        self,
        config: NodeConfig,
        client: BankClient,
        models: PublishedModels,
        state: Callable[[], NodeState],
        roster: Callable[[], RosterState | None],
        data: Callable[[RoundInfo], LocalData],
    ) -> None:
        self.config = config
        self.client = client
        self.models = models
        self._state = state
        self._roster = roster
        self._data = data
        self.registry = NodeRegistry(config, client)  # every model kept, with its passport

    @property
    def state(self) -> NodeState:
        return self._state()

    # --- taking part in an evaluation round -------------------------------------------

    def contribution(self, evaluation: RoundInfo) -> tuple[np.ndarray, int]:
        """``(histograms / n, n)``, n the validation rows: packed like a statistics round.

        ``Refused`` when E is inconsistent or the candidate or current model is one this
        bank does not use; ``HEError`` (the node sits out, no objection) without rows.
        """
        candidate = self.candidate(evaluation)
        # The candidate is the model the round produces: the server optimiser's step applied.
        cand_weights = self.models.produced(candidate.number, candidate.key_epoch).weights
        current = self.models.base_weights(evaluation)  # None: the policy's initial model
        norm = self.models.normalizer(evaluation.stats_round)
        spec, n_features = evaluation.policy.model_spec, evaluation.policy.n_features
        nets: list[torch.nn.Module] = [
            model_from_vector(spec, n_features, w) for w in (cand_weights, current)
        ]
        if self.config.training.streams:  # validation rows scored as they are read
            val, _ = held_out(self.config, nets, norm)
            labels, (cand_scores, cur_scores) = val.labels, val.scores
        else:
            data = self._data(evaluation).normalized(norm)
            labels = data.y_val
            cand_scores, cur_scores = (predict_scores(net, data.x_val) for net in nets)
        rows = int(labels.size)
        if rows == 0:
            raise HEError(f"round {evaluation.number}: no validation rows to score models on")
        return gate_vector(cand_scores, cur_scores, labels) / rows, rows

    def candidate(self, evaluation: RoundInfo) -> RoundInfo:
        """E's candidate round as the portal describes it, checked against E."""
        candidate = self.client.round(check_evaluation_round(evaluation))
        check_candidate(evaluation, candidate)
        return candidate

    # --- after an evaluation round publishes -------------------------------------------

    def concluded(self, evaluation: RoundInfo) -> bool:
        record = self.state.verdicts.get(str(evaluation.candidate_round))
        return record is not None and record["round"] == evaluation.number

    def conclude(self, evaluation: RoundInfo) -> dict[str, Any]:
        """Decrypt E's sum, decide, remember, sign and post; the record kept in the state."""
        candidate = self.candidate(evaluation).number
        counts, rows = self.models.global_weights(evaluation.number, evaluation.key_epoch)
        policy = evaluation.policy
        assert policy.gate_tolerance is not None  # check_evaluation_round refuses otherwise
        outcome = gate_decide(counts * rows, policy.gate_tolerance, policy.gate_alert_rate)
        aggregate = aggregate_file(self.config.state_dir, evaluation.number)
        record = _record(evaluation.number, candidate, file_sha256(aggregate), outcome)
        record |= self._signed(record)
        self.state.verdicts[str(candidate)] = record
        self.state.save(state_file(self.config.state_dir))
        self.registry.decided(candidate, record)
        _log_outcome(evaluation.number, candidate, outcome, policy.gate_alert_rate)
        node_metrics.gate_decided(
            record["decision"], outcome.candidate.auprc, outcome.current.auprc
        )
        self._post(record)
        if outcome.adopt:
            self.serve(candidate)
        return record

    def _signed(self, record: dict[str, Any]) -> dict[str, Any]:
        """The verdict signed with the bank's roster key; none without a pinned roster."""
        roster = self._roster()
        if roster is None:  # no roster key the portal could verify it under
            return {"verdict": None, "signature": None}
        verdict = GateVerdict(
            consortium_id=roster.consortium_id,
            round_number=record["round"],
            candidate_round=record["candidate_round"],
            aggregate_digest=record["aggregate_digest"],
            decision=record["decision"],
            candidate_auprc=record["candidate_auprc"],
            current_auprc=record["current_auprc"],
            candidate_recall=record["candidate_recall"],
            current_recall=record["current_recall"],
            bank_id=self.config.bank,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        signature = sign_verdict(verdict, self.models.keys.signing_key)
        return {"verdict": verdict.to_dict(), "signature": signature}

    def post_pending(self, evaluation: RoundInfo) -> None:
        """Send again a verdict the portal could not be reached for (the same signed bytes)."""
        record = self.state.verdicts.get(str(evaluation.candidate_round))
        if record is not None and record["round"] == evaluation.number and not record.get("posted"):
            self._post(record)

    def _post(self, record: dict[str, Any]) -> None:
        """Send the signed verdict; the node's own decision stands whatever the portal says.

        ``posted`` stays False only while the portal is unreachable: the verdict is sent
        again at a later poll. A 4xx is the portal's final answer, logged.
        """
        record["posted"] = record["verdict"] is None  # nothing to send without a roster
        if record["verdict"] is not None:
            try:
                self.client.send_verdict(record["round"], record["verdict"], record["signature"])
                record["posted"] = True
            except PortalError as exc:
                record["posted"] = exc.status is not None
                log.warning(
                    "round %s: verdict not recorded by the portal: %s", record["round"], exc
                )
        self.state.save(state_file(self.config.state_dir))

    # --- the model this node trains from and serves -----------------------------------

    def check_base(self, rnd: RoundInfo) -> None:
        """Before training from base B under a gated policy: this bank adopted B itself."""
        if not rnd.is_training or rnd.base_round is None:
            return
        base = self.client.round(rnd.base_round)
        # A base from an ungated policy (the banks approved that policy) needs no verdict.
        if not base.policy.gated:
            return
        decision = self.decision_for(base)
        if decision != "adopt":
            raise Refused(
                "base_not_adopted",
                f"round {rnd.number}: its base round {base.number} was rejected by this "
                "bank's evaluation gate; it will not train on it",
            )

    def decision_for(self, base: RoundInfo) -> str:
        """This bank's decision on ``base``, recomputed from its evaluation round if needed."""
        known = self.state.verdicts.get(str(base.number))
        if known is not None:
            return str(known["decision"])
        if base.gate_round is None:
            raise _not_adopted(base, "has no evaluation round")
        evaluation = self.client.round(base.gate_round)
        if evaluation.state != "published" or evaluation.candidate_round != base.number:
            raise _not_adopted(base, f"has no published evaluation round ({base.gate_round})")
        try:
            return str(self.conclude(evaluation)["decision"])
        except Refused as exc:
            raise _not_adopted(base, f"could not be verified: {exc.message}") from exc

    def keep(
        self,
        rnd: RoundInfo,
        weights: np.ndarray,
        threshold: float | None,
        metrics: dict[str, Any],
    ) -> None:
        """Serve an evaluated model now (ungated), or keep it until the gate adopts it."""
        state_dir = self.config.state_dir
        norm = self.models.normalizer(rnd.stats_round)
        # The bins `score` measures drift against (bank_node/drift_state.py).
        if self.config.training.streams:
            net = model_from_vector(rnd.policy.model_spec, rnd.policy.n_features, weights)
            drift_reference_keep(
                state_dir, rnd.number, node_drift_reference(self.config, net, norm)
            )
        else:
            drift_reference_save(state_dir, rnd.number, rnd.policy, weights, self._data(rnd), norm)
        self.registry.evaluated(rnd, weights, threshold, metrics, self.verdict_on(rnd.number))
        if not rnd.policy.gated:
            save_global_model(state_dir, rnd, weights, threshold)
            node_metrics.global_model_evaluated(rnd.number, metrics)
            return
        keep_candidate(state_dir, rnd, weights, threshold)
        if str(rnd.number) not in self.state.gated:
            self.state.gated.append(str(rnd.number))
            self.state.save(state_file(self.config.state_dir))
        if self.state.verdicts.get(str(rnd.number), {}).get("decision") == "adopt":
            self.serve(rnd.number, metrics)

    def verdict_on(self, number: int) -> dict[str, Any] | None:
        return self.state.verdicts.get(str(number))

    def serve(self, number: int, metrics: dict[str, Any] | None = None) -> None:
        """Serve adopted candidate ``number`` if this node kept it and serves nothing newer."""
        if serve_candidate(self.config.state_dir, number):
            figures = metrics or self.state.evaluated.get(str(number), {})
            node_metrics.global_model_evaluated(number, figures)
            log.info("round %s: adopted by the gate; now the served model", number)


def _not_adopted(base: RoundInfo, why: str) -> Refused:
    return Refused(
        "base_not_adopted",
        f"base round {base.number} {why}; this bank trains only from a model its own "
        "evaluation gate adopted",
    )


def _record(round_number: int, candidate: int, digest: str, outcome: GateOutcome) -> dict[str, Any]:
    """What the node remembers of a gate decision (and signs, with its identity)."""
    return {
        "round": round_number,
        "candidate_round": candidate,
        "aggregate_digest": digest,
        "decision": "adopt" if outcome.adopt else "reject",
        "candidate_auprc": figure(outcome.candidate.auprc),
        "current_auprc": figure(outcome.current.auprc),
        "candidate_recall": figure(outcome.candidate.recall_at_alert),
        "current_recall": figure(outcome.current.recall_at_alert),
    }


def _log_outcome(number: int, candidate: int, outcome: GateOutcome, alert_rate: float) -> None:
    cand, cur = outcome.candidate, outcome.current
    log.info(
        "round %s: gate on candidate %s: %s (consortium AUPRC %.4f vs current %.4f, "
        "tolerance %g; recall at %g%% alerts %.4f vs %.4f; %.0f rows, %.0f positives)",
        number,
        candidate,
        "ADOPT" if outcome.adopt else "REJECT",
        cand.auprc,
        cur.auprc,
        outcome.tolerance,
        alert_rate * 100,
        cand.recall_at_alert,
        cur.recall_at_alert,
        cand.rows,
        cand.positives,
    )
