"""The node's round logic: join, train, encrypt, sign, upload; decrypt, evaluate, report."""

from __future__ import annotations

import logging
import time
from typing import Any

from bank_node import metrics as node_metrics
from bank_node.agent_update import UpdateSteps
from bank_node.aggregate_guard import policy_model_length
from bank_node.checks import (
    Refused,
    check_dependencies,
    check_feature_set,
    check_guardrails,
    check_round,
)
from bank_node.config import NodeConfig
from bank_node.data import check_header
from bank_node.gate import EvaluationGate
from bank_node.global_models import PublishedModels
from bank_node.keys import Keyring
from bank_node.objections import Objector
from bank_node.portal_client import BankClient, PortalError
from bank_node.resilience import StepGuard
from bank_node.roster import RosterKeeper
from bank_node.secagg_steps import SecAggSteps
from bank_node.sketch_round import SketchRounds
from bank_node.state import NodeState, state_file
from bank_node.train_session import SessionError
from bank_node.training import (
    LocalData,
    evaluate,
    local_data,
    model_from_vector,
)
from bank_node.training_stream import node_evaluate
from governance import RosterState
from he.errors import HEError
from he.signing import sign, update_message_v2
from models.privacy import PrivacyBudgetExceeded
from protocol import PolicySnapshot, PrivacyClaim, RoundInfo

log = logging.getLogger("bank_node")

DAY_SECONDS = 86400.0
# Quality figures a bank may opt in to report (report_metrics); never row counts or rates.
REPORTABLE_METRICS = ("auprc", "recall_at_0.5pct", "f1")


class Agent(UpdateSteps):
    """A bank's node: polls the portal and acts on each round (``bank-node run``)."""

    def __init__(
        self,
        config: NodeConfig,
        keys: Keyring,
        client: BankClient,
        keeper: RosterKeeper | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.client = client
        self.keeper = keeper
        self.objector = Objector(
            client,
            config.bank,
            keys.signing_key,
            lambda: keeper.state.consortium_id if keeper is not None else None,
        )
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = state_file(config.state_dir)
        self.state = NodeState.load(self.state_path)
        self.secagg = SecAggSteps(config, keys, client, lambda: self.roster)
        self.models = PublishedModels(
            config, keys, client, self.secagg, lambda: self.roster, lambda: self.state
        )
        self.sketches = SketchRounds(
            config,
            keys,
            lambda n, e: self.models.global_weights(n, e),
            lambda: self.state,
            lambda: self.client.rounds(limit=5),
        )
        self.gate = EvaluationGate(
            config, client, self.models, lambda: self.state, lambda: self.roster, self.round_data
        )
        self.guard = StepGuard(self.refuse, self.give_up)
        node_metrics.set_privacy_spent(self.state.epsilon or 0.0)  # as of the last DP round

    def data(self, policy: PolicySnapshot) -> LocalData:
        """This bank's data as the policy's feature set; ``Refused`` if it cannot compute it."""
        self.check_data(policy)
        config = self.config
        return local_data(
            config.data_file, config.evaluation, policy.feature_set, config.data_format
        )

    def check_data(self, policy: PolicySnapshot) -> None:
        """The policy's feature set is computable from this bank's data (header read only)."""
        fmt = check_header(self.config.data_file, self.config.data_format)
        check_feature_set(policy, fmt.name, fmt.frame_columns)

    def round_data(self, rnd: RoundInfo) -> LocalData:
        """The data of ``rnd``'s policy: with cross-bank features when it asks for them."""
        return self.sketches.data_for(rnd, self.data(rnd.policy))

    # --- one poll ------------------------------------------------------------------

    @property
    def roster(self) -> RosterState | None:
        """The verified roster state, or None when no genesis is pinned."""
        return self.keeper.state if self.keeper is not None else None

    def step(self) -> None:
        """Do whatever is due now: join the open round, evaluate newly published ones.

        Each part runs in ``self.guard`` (``bank_node.resilience``): whatever the portal
        sends, a failure of one part is refused or logged and counted, and the rest runs.
        """
        if self.keeper is not None:
            with self.guard("roster", 0):
                self.keeper.refresh(self.client, self.objector)
        current = self.guard.call("poll", 0, self.client.current_round)
        if current is not None:
            with self.guard("join", current.number, self.sit_out):
                self.join(current)
        for rnd in self.guard.call("poll", 0, lambda: self.client.rounds(limit=5)) or []:
            with self.guard("evaluate", rnd.number):
                self.review(rnd)

    def review(self, rnd: RoundInfo) -> None:
        """Count a listed round as missed, or evaluate (or decide) a newly published one."""
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
            self.evaluate_or_refuse(rnd)
        elif rnd.state == "published" and rnd.is_sketch and key not in self.state.sketches:
            if key not in self.state.refused:  # any member may use the others' sum
                self.evaluate_or_refuse(rnd)
        elif rnd.state == "published" and rnd.is_evaluation and key not in self.state.refused:
            if self.gate.concluded(rnd):
                self.gate.post_pending(rnd)
            else:  # every member decides, whether it took part in the round or not
                self.evaluate_or_refuse(rnd)

    def give_up(self, step: str, number: int, why: str) -> None:
        """Stop retrying round ``number`` after repeated unexpected errors (not an objection)."""
        record = self.state.skipped if step == "join" else self.state.refused
        record.setdefault(str(number), why)
        self.state.save(self.state_path)

    def join(self, rnd: RoundInfo) -> None:
        """Act on the round in flight: train when open, or a secure-aggregation v2 phase."""
        if rnd.state == "open":
            node_metrics.round_seen_open(rnd.number)
            self.participate(rnd)
        elif rnd.policy.masked and rnd.state in ("sharing", "unmasking"):
            self.secagg_phase(rnd)

    def secagg_phase(self, rnd: RoundInfo) -> None:
        """Sharing: advertise the mask key (once); unmasking: reveal (once, survivors only)."""
        key = str(rnd.number)
        if key in self.state.skipped or self.epoch_missing(rnd):
            return
        try:
            if rnd.state == "sharing":
                self.check_round(rnd)
                self.secagg.share(rnd)
            elif key in self.state.submitted:
                self.secagg.unmask(rnd)
        except Refused as exc:
            self.sit_out(rnd.number, exc)

    def sit_out(self, number: int, exc: Refused) -> None:
        """Object, and take no further part in round ``number``."""
        self.refuse(number, exc)
        self.state.skipped[str(number)] = exc.message
        self.state.save(self.state_path)

    def evaluate_or_refuse(self, rnd: RoundInfo) -> dict[str, Any] | None:
        """Evaluate a published aggregate (decide a gate), unless this bank must not use it."""
        try:
            if rnd.is_evaluation:
                return self.gate.conclude(rnd)
            if rnd.is_sketch:
                return {"as_of": list(self.sketches.conclude(rnd).spec.as_of)}
            return self.evaluate_published(rnd)
        except Refused as exc:
            self.refuse(rnd.number, exc)
            # Also when what was refused was another round this one depends on (its
            # statistics round): the node does not try, and object, at every poll.
            self.state.refused.setdefault(str(rnd.number), exc.message)
            self.state.save(self.state_path)
            return None

    def refuse(self, number: int, exc: Refused) -> None:
        """Log, count and object; the last good model stays, the node keeps polling."""
        self.objector.refuse(number, exc.reason, exc.message)

    def check_round(self, rnd: RoundInfo) -> None:
        """Everything the roster and this bank's guardrails must allow before training."""
        check_round(self.roster, rnd)
        now = time.time()
        recent = sum(1 for t in self.state.submitted_at.values() if now - t < DAY_SECONDS)
        epochs = {self.keys.fingerprint, *self.keys.previous}
        check_guardrails(self.config.guardrails, rnd, rounds_last_day=recent, node_epochs=epochs)
        deps = [self.client.round(n) for n in (rnd.base_round, rnd.stats_round) if n is not None]
        check_dependencies(rnd, self.state.refused, deps)
        self.gate.check_base(rnd)  # under a gated policy: a base this bank adopted itself
        self.check_data(rnd.policy)  # before training, and before v2 sharing commits us

    def participate(self, rnd: RoundInfo) -> bool:
        """Train on the round's base and upload; False when the node must sit this one out."""
        key = str(rnd.number)
        if key in self.state.submitted or key in self.state.skipped or self.epoch_missing(rnd):
            return False
        started = time.monotonic()
        try:
            self.check_round(rnd)
            if rnd.is_training:  # a spec that builds no model would fail in training
                policy_model_length(rnd.number, rnd.policy.model_spec, rnd.policy.n_features)
            cohort = self.secagg.cohort(rnd) if rnd.policy.masked else None
            if cohort is not None:  # the masks need no update: computed while training
                self.secagg.start_masks(rnd, cohort)
            weights, n, privacy = self.local_update(rnd)
            values = self.pack(rnd, weights, n)
        except Refused as exc:
            self.sit_out(rnd.number, exc)
            return False
        except (HEError, PrivacyBudgetExceeded, SessionError) as exc:
            # e.g. the base aggregate is under a key epoch this node never held, or the
            # bank's other training machines did not join (num_nodes > 1): nothing to object to
            log.error("round %s: sitting out: %s", key, exc)
            self.state.skipped[key] = str(exc)
            self.state.save(self.state_path)
            return False
        log.info("round %s: update over %d rows in %.1fs", key, n, time.monotonic() - started)
        node_metrics.local_update_done(rnd.kind, time.monotonic() - started)
        digest, path = self.encrypt(rnd, values, cohort)
        claim = privacy or PrivacyClaim()
        message = update_message_v2(
            rnd.number, self.config.bank, digest, claim.epsilon, claim.budget_left
        )
        signature = sign(self.keys.signing_key, message)
        self.client.upload_update(rnd.number, path, digest, signature, privacy=privacy)
        node_metrics.uploaded(path)
        path.unlink(missing_ok=True)
        self.state.submitted[key] = digest
        self.state.submitted_at[key] = time.time()
        self.state.save(self.state_path)
        log.info("round %s: uploaded %s", key, digest[:16])
        return True

    def epoch_missing(self, rnd: RoundInfo) -> bool:
        """True (and the round skipped) when the round is under a key this node lacks."""
        if rnd.key_epoch == self.keys.fingerprint:
            return False
        reason = (
            f"round {rnd.number} uses key epoch {rnd.key_epoch[:16]}..., this node holds "
            f"{self.keys.fingerprint[:16]}...; install the current consortium key"
        )
        log.error(reason)
        self.state.skipped[str(rnd.number)] = reason
        self.state.save(self.state_path)
        return True

    def evaluate_published(self, rnd: RoundInfo) -> dict[str, Any]:
        produced = self.models.produced(rnd.number, rnd.key_epoch)  # the server optimiser's
        weights = produced.weights
        policy = rnd.policy
        model = model_from_vector(policy.model_spec, policy.n_features, weights)
        norm = self.normalizer(rnd.stats_round)
        if self.config.training.streams:  # held-out rows scored as they are read
            metrics = node_evaluate(self.config, model, norm)
        else:
            metrics = evaluate(model, self.round_data(rnd).normalized(norm))
        threshold = metrics.pop("threshold", None)
        if self.state.epsilon is not None:
            metrics["epsilon"] = self.state.epsilon
        # Under FedAvg the model is the decrypted aggregate the manifest pins: no digest.
        digest = produced.digest if policy.server_optimizer != "fedavg" else ""
        self.report(rnd.number, metrics, digest)
        self.state.evaluated[str(rnd.number)] = metrics
        self.state.save(self.state_path)
        self.gate.keep(rnd, weights, threshold, metrics)  # served now, or once adopted
        log.info(
            "round %s: global model AUPRC %.4f on local held-out data",
            rnd.number,
            metrics["auprc"] or float("nan"),
        )
        return metrics

    def rounds_done(self) -> int:
        """Training rounds evaluated; a gated one counts once this node decided its gate."""
        pending = set(self.state.gated) - set(self.state.verdicts)
        return sum(1 for number in self.state.evaluated if number not in pending)

    def report(self, number: int, metrics: dict[str, Any], model_digest: str = "") -> None:
        """Send quality figures only if this bank opted in; row counts and rates never.

        ``model_digest`` (the produced model's, under a server optimiser other than FedAvg)
        is sent whether or not the bank shares figures: every member computes the same
        model, and the portal flags a node whose digest differs.
        """
        figures: dict[str, Any] = {}
        if self.config.report_metrics:
            figures = {name: metrics.get(name) for name in REPORTABLE_METRICS}
        if not figures and not model_digest:
            return
        digest = {"model_digest": model_digest} if model_digest else {}
        try:
            self.client.report_metrics(number, figures, **digest)
        except PortalError as exc:
            log.warning("round %s: metrics not reported: %s", number, exc.message)

    # --- loops ---------------------------------------------------------------------

    def run(self, *, max_rounds: int = 0, idle_exit_seconds: float = 0) -> None:
        """Poll until stopped, or until ``max_rounds`` rounds were evaluated."""
        last_activity = time.monotonic()
        while True:
            before = (len(self.state.submitted), len(self.state.evaluated))
            try:
                with self.guard("poll", 0):  # the last catch: the loop outlives any one bug
                    self.step()
            except PortalError as exc:  # unreachable or a 4xx: polled again, never fatal
                node_metrics.POLL_ERRORS.inc()
                log.warning("portal: %s", exc)
            if (len(self.state.submitted), len(self.state.evaluated)) != before:
                last_activity = time.monotonic()
            if max_rounds and self.rounds_done() >= max_rounds:
                return
            if idle_exit_seconds and time.monotonic() - last_activity > idle_exit_seconds:
                log.info("no activity for %.0fs; exiting", idle_exit_seconds)
                return
            time.sleep(self.config.poll_interval_seconds)
