"""The consortium's state: running, waiting or halted, and why no round opens (stored facts only).

The scheduler asks the same questions before it opens a round (``round_open_next``), so
what this module says halted the consortium is what stopped the scheduler: both read
``failures_in_a_row``, ``training_rounds_published`` and ``privacy_budget_spend``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.conf import settings

from consortium.governance import selectors as roster
from consortium.members.selectors import bank_list_active
from consortium.rounds.models import (
    IN_FLIGHT_STATES,
    KeyEpoch,
    Round,
    RoundKind,
    RoundPolicy,
    RoundState,
)
from governance import RosterError
from he.params import CkksParams


class ConsortiumStatus(StrEnum):
    RUNNING = "running"  # a round is in flight
    WAITING = "waiting"  # none is, and nothing stops the next from opening
    HALTED = "halted"  # none is, and the reasons below stop the scheduler opening one


class HaltCode(StrEnum):
    """Why no round opens: a fixed set, so that the metric's ``reason`` label stays small."""

    NO_POLICY = "no_policy"
    NO_KEY_EPOCH = "no_key_epoch"
    ROSTER_INVALID = "roster_invalid"
    POLICY_NOT_APPROVED = "policy_not_approved"
    KEY_EPOCH_NOT_IN_FORCE = "key_epoch_not_in_force"
    CKKS_MISMATCH = "ckks_mismatch"
    NO_ROSTER = "no_roster"
    MAX_ROUNDS = "max_rounds"
    CONSECUTIVE_FAILURES = "consecutive_failures"
    DISPUTED = "disputed"
    PRIVACY_BUDGET = "privacy_budget"
    TOO_FEW_MEMBERS = "too_few_members"
    COHORT_TOO_LARGE = "cohort_too_large"


@dataclass(frozen=True)
class HaltReason:
    """One reason, as a person reads it: what, the detail behind it, and what to do."""

    code: HaltCode
    summary: str  # "privacy budget spent by 18 of 20 banks"
    detail: str
    way_forward: str

    def as_dict(self) -> dict[str, str]:
        return {
            "code": str(self.code),
            "summary": self.summary,
            "detail": self.detail,
            "way_forward": self.way_forward,
        }


@dataclass(frozen=True)
class ConsortiumState:
    status: ConsortiumStatus
    reasons: list[HaltReason] = field(default_factory=list)
    round_in_flight: int | None = None

    @property
    def way_forward(self) -> list[str]:
        return list(dict.fromkeys(r.way_forward for r in self.reasons))

    @property
    def codes(self) -> list[str]:
        return [str(r.code) for r in self.reasons]

    @property
    def sentence(self) -> str:
        """The state in one line, e.g. "halted: privacy budget spent by 18 of 20 banks"."""
        if self.status == ConsortiumStatus.RUNNING:
            return f"running: round {self.round_in_flight} is in flight"
        if self.status == ConsortiumStatus.WAITING:
            return "waiting: no round in flight; the scheduler opens the next one at its next tick"
        return "halted: " + "; ".join(r.summary for r in self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "sentence": self.sentence,
            "reasons": [r.as_dict() for r in self.reasons],
            "way_forward": self.way_forward,
        }


def consortium_state() -> ConsortiumState:
    """Running while a round is in flight; else halted with its reasons, or waiting."""
    flight = (
        Round.objects.filter(state__in=IN_FLIGHT_STATES).values_list("number", flat=True).first()
    )
    if flight is not None:
        return ConsortiumState(ConsortiumStatus.RUNNING, round_in_flight=flight)
    reasons = halt_reasons()
    status = ConsortiumStatus.HALTED if reasons else ConsortiumStatus.WAITING
    return ConsortiumState(status, reasons)


def halt_reasons() -> list[HaltReason]:
    """Every reason the scheduler would not open a round now (empty: it would)."""
    policy = RoundPolicy.objects.filter(active=True).order_by("-created_at").first()
    epoch = KeyEpoch.objects.filter(active=True).defer("public_context").order_by("-number").first()
    reasons = _setup_reasons(policy, epoch)
    if policy is None or epoch is None:
        return reasons
    try:
        return reasons + _roster_reasons(policy, epoch) + _policy_reasons(policy)
    except RosterError as exc:  # a stored roster that fails its checks: nothing else is sure
        return [*reasons, _roster_invalid(exc)]


def _setup_reasons(policy: RoundPolicy | None, epoch: KeyEpoch | None) -> list[HaltReason]:
    reasons = []
    if policy is None:
        reasons.append(
            HaltReason(
                HaltCode.NO_POLICY,
                "no active round policy",
                "The scheduler opens rounds only under the newest active policy.",
                "Create a policy and make it active (Policies, or manage.py policy_create).",
            )
        )
    if epoch is None:
        reasons.append(
            HaltReason(
                HaltCode.NO_KEY_EPOCH,
                "no active key epoch",
                "Rounds are encrypted under the consortium's current CKKS key; none is registered.",
                "Register a key epoch made by bank-node keygen (manage.py key_epoch_register).",
            )
        )
    return reasons


def _roster_invalid(exc: RosterError) -> HaltReason:
    return HaltReason(
        HaltCode.ROSTER_INVALID,
        "the stored roster does not verify",
        f"The banks' signed roster in the database fails its checks: {exc}.",
        "Restore the roster rows from a backup or the banks' signed copies (docs/governance.md).",
    )


def _roster_reasons(policy: RoundPolicy, epoch: KeyEpoch) -> list[HaltReason]:
    """The roster's approvals, and a policy and key epoch that agree on the CKKS parameters."""
    reasons = []
    if refusal := roster.policy_refusal(policy):
        reasons.append(
            HaltReason(
                HaltCode.POLICY_NOT_APPROVED,
                f"policy {policy} is not approved by the banks' roster",
                refusal,
                "Have the member banks sign a roster change approving this policy version.",
            )
        )
    if refusal := roster.key_epoch_refusal(epoch.fingerprint):
        reasons.append(
            HaltReason(
                HaltCode.KEY_EPOCH_NOT_IN_FORCE,
                f"key epoch {epoch.number} is not in force in the roster",
                refusal,
                "Have the member banks sign a roster change registering this key epoch.",
            )
        )
    if CkksParams.from_dict(policy.ckks_params) != CkksParams.from_dict(epoch.ckks_params):
        reasons.append(
            HaltReason(
                HaltCode.CKKS_MISMATCH,
                f"policy {policy} and key epoch {epoch.number} disagree on CKKS parameters",
                "A round is encrypted under the key epoch with the policy's CKKS parameters.",
                "Publish a new policy version with the key epoch's CKKS parameters, or start "
                "a new key epoch with the policy's.",
            )
        )
    return reasons


def _policy_reasons(policy: RoundPolicy) -> list[HaltReason]:
    """The active policy's own limits, and the members it needs."""
    reasons = [*_failure_reasons(policy), *_member_reasons(policy)]
    trained = training_rounds_published(policy)
    if trained >= policy.max_rounds:
        reasons.append(
            HaltReason(
                HaltCode.MAX_ROUNDS,
                f"maximum rounds reached ({trained} of {policy.max_rounds} training rounds)",
                f"Policy {policy} allows {policy.max_rounds} published training rounds and "
                f"{trained} have published (statistics and evaluation rounds do not count).",
                "Publish a new policy version to train further (its rounds count from zero), "
                "or keep the current model.",
            )
        )
    if (spend := privacy_budget_spend(policy)) is not None:
        reasons.append(_budget_reason(policy, spend))
    return reasons


def _failure_reasons(policy: RoundPolicy) -> list[HaltReason]:
    failed = failures_in_a_row(policy)
    if failed < policy.max_consecutive_failures:
        return []
    last = policy.rounds.filter(state=RoundState.FAILED).order_by("-number").first()
    why = last.failure_reason if last is not None else ""
    reasons = [
        HaltReason(
            HaltCode.CONSECUTIVE_FAILURES,
            f"{failed} rounds failed in a row (limit {policy.max_consecutive_failures})",
            f"The last rounds under policy {policy} failed; the newest: {why or 'no reason'}.",
            "Read why on the failed rounds' pages and fix it, then publish a new policy "
            "version (its failure count starts from zero).",
        )
    ]
    if "disputed" in why:
        reasons.append(
            HaltReason(
                HaltCode.DISPUTED,
                "the round the next one builds on is disputed",
                why,
                "The banks lift the dispute with signed clearances, or a new policy version "
                "starts from another base (docs/governance.md, 'Disputed rounds').",
            )
        )
    return reasons


def _member_reasons(policy: RoundPolicy) -> list[HaltReason]:
    """Too few active members for ``min_banks``; v2 needs a roster and a cohort it can sum."""
    if policy.secure_aggregation == "v2" and roster.roster_active_slugs() is None:
        return [
            HaltReason(
                HaltCode.NO_ROSTER,
                "secure aggregation v2 needs the banks' signed roster, and none is in force",
                f"Policy {policy} runs v2, whose cohort and agreement keys come from the roster.",
                "Found the consortium (docs/governance.md), or publish a v1 policy version.",
            )
        ]
    active = list(roster.roster_filter_active(bank_list_active()).values_list("slug", flat=True))
    need = max(policy.min_banks, roster.roster_min_banks())
    if len(active) < need:
        return [
            HaltReason(
                HaltCode.TOO_FEW_MEMBERS,
                f"too few active members ({len(active)} of the {need} a round needs)",
                f"Active members: {', '.join(sorted(active)) or 'none'}; "
                f"min_banks is {need} (the higher of the policy's and the roster's).",
                "Reactivate suspended members or onboard banks; or publish a policy version "
                "with a lower min_banks (never below 3) the banks approve.",
            )
        ]
    if policy.secure_aggregation == "v2" and len(active) > settings.MAX_BANKS_PER_ROUND:
        return [
            HaltReason(
                HaltCode.COHORT_TOO_LARGE,
                f"{len(active)} members exceed the {settings.MAX_BANKS_PER_ROUND} a round sums",
                "Above CONSORTIUM_MAX_BANKS_PER_ROUND the sum would leave the CKKS headroom.",
                "Raise CONSORTIUM_MAX_BANKS_PER_ROUND within the CKKS parameters' headroom "
                "(docs/secure-aggregation.md), or start a new key epoch with larger ones.",
            )
        ]
    return []


@dataclass(frozen=True)
class BudgetSpend:
    """Who, in the last published training round, said no further round fits their budget."""

    round: int
    spent: list[str]  # banks whose signed claim says their budget is spent
    banks: int  # banks that took part in that round
    able: int  # banks with budget left


def _budget_reason(policy: RoundPolicy, spend: BudgetSpend) -> HaltReason:
    return HaltReason(
        HaltCode.PRIVACY_BUDGET,
        f"privacy budget spent by {len(spend.spent)} of {spend.banks} banks",
        f"In round {spend.round} {', '.join(spend.spent)} signed that another round would pass "
        f"their budget (ε {policy.dp_target_epsilon:g}); {spend.able} can still take part, "
        f"fewer than min_banks {policy.min_banks}.",
        "Keep the current model, or agree a new policy version with the banks (a new budget "
        "needs their approval and a fresh privacy analysis).",
    )


def failures_in_a_row(policy: RoundPolicy) -> int:
    """Failed rounds under ``policy``, newest first, before the first that did not fail."""
    limit = policy.max_consecutive_failures + 1  # enough to tell whether the limit is reached
    states = list(policy.rounds.order_by("-number").values_list("state", flat=True)[:limit])
    return next((i for i, s in enumerate(states) if s != RoundState.FAILED), len(states))


def training_rounds_published(policy: RoundPolicy) -> int:
    """What ``max_rounds`` counts: published training rounds (not statistics or evaluation)."""
    return policy.rounds.filter(kind=RoundKind.TRAINING, state=RoundState.PUBLISHED).count()


def privacy_budget_spend(policy: RoundPolicy) -> BudgetSpend | None:
    """The consortium's budget is spent when, in the last published training round under a
    DP policy, fewer than ``min_banks`` banks signed that another round still fits theirs."""
    if not policy.dp_enabled or policy.dp_target_epsilon is None:
        return None
    last = (
        policy.rounds.filter(kind=RoundKind.TRAINING, state=RoundState.PUBLISHED)
        .order_by("-number")
        .first()
    )
    if last is None:
        return None
    rows = list(last.submissions.values_list("bank__slug", "budget_left").order_by("bank__slug"))
    able = sum(1 for _, left in rows if left is True)
    if able >= policy.min_banks:
        return None
    spent = [slug for slug, left in rows if left is not True]
    return BudgetSpend(last.number, spent, len(rows), able)
