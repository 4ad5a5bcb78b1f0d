"""Checks before acting: a round or an aggregate against the verified roster and guardrails.

Pure functions over a verified ``governance.RosterState`` (None when no genesis is pinned),
the bank's own ``Guardrails`` and the typed ``protocol`` messages. Each raises ``Refused``
naming what is wrong; the agent logs it, counts it, sends a signed objection and sits the
round out. Nothing here does IO except hashing a downloaded file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from bank_node.config import Guardrails
from bank_node.counts import MAX_BANKS_PER_SUM
from governance import RosterError, RosterState, check_cohort
from he.signing import update_signature_valid
from models.counterparty_sketch import sketch_feature_count
from models.feature_sets import FEATURE_SETS
from protocol import Manifest, ManifestInput, PolicySnapshot, RoundInfo


class Refused(Exception):
    """The node will not act on something the portal asked; ``reason`` is a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _policy_name(policy: PolicySnapshot) -> str:
    return f"policy {policy.name!r} v{policy.version}"


def check_policy_approved(state: RosterState, policy: PolicySnapshot) -> None:
    """The round's policy snapshot must be one the banks approved, byte for byte."""
    if not state.is_policy_approved(policy.name, policy.version, policy.digest()):
        raise Refused(
            "policy_not_approved",
            f"{_policy_name(policy)} (snapshot sha256 {policy.digest()[:16]}…) is not approved "
            f"in roster version {state.version}",
        )


def check_key_epoch(state: RosterState, fingerprint: str) -> None:
    if not state.key_epoch_in_force(fingerprint):
        raise Refused(
            "key_epoch_not_in_force",
            f"key epoch {fingerprint[:16]}… is not in force in roster version {state.version}",
        )


def check_roster_floors(state: RosterState, policy: PolicySnapshot) -> None:
    """The policy respects the roster's min_banks floor and its privacy floor."""
    name = _policy_name(policy)
    if policy.min_banks < state.min_banks:
        raise Refused(
            "min_banks_below_floor",
            f"{name}: min_banks {policy.min_banks} is below the roster's floor {state.min_banks}",
        )
    floor = state.privacy
    if floor.dp_required and not policy.dp_enabled:
        raise Refused("privacy_floor", f"{name} runs without DP; the roster requires DP")
    ceiling, eps = floor.epsilon_ceiling, policy.dp_target_epsilon
    if ceiling is not None and policy.dp_enabled and (eps is None or eps > ceiling):
        raise Refused(
            "privacy_floor",
            f"{name}: dp_target_epsilon {_num(eps)} exceeds the roster's epsilon ceiling "
            f"{_num(ceiling)}",
        )


def _num(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:g}"


def _guardrail(
    policy: PolicySnapshot, field: str, value: object, rail: str, limit: object, verb: str
) -> Refused:
    return Refused(
        "guardrail",
        f"{_policy_name(policy)}: {field} {value} {verb} this bank's guardrail {rail} {limit}",
    )


def check_guardrails(
    rails: Guardrails, rnd: RoundInfo, *, rounds_last_day: int, node_epochs: set[str]
) -> None:
    """The round is within what this bank accepts; the message names field and limit."""
    policy = rnd.policy
    if policy.min_banks < rails.min_cohort:
        raise _guardrail(
            policy, "min_banks", policy.min_banks, "min_cohort", rails.min_cohort, "is below"
        )
    if rails.dp_required and not policy.dp_enabled:
        raise _guardrail(policy, "DP", "off", "dp_required", "true", "violates")
    ceiling, eps = rails.epsilon_ceiling, policy.dp_target_epsilon
    if ceiling is not None and policy.dp_enabled and (eps is None or eps > ceiling):
        raise _guardrail(
            policy, "dp_target_epsilon", _num(eps), "epsilon_ceiling", _num(ceiling), "exceeds"
        )
    if rails.max_rounds_per_day is not None and rounds_last_day >= rails.max_rounds_per_day:
        raise Refused(
            "guardrail",
            f"round {rnd.number}: this bank already took part in {rounds_last_day} round(s) in "
            f"the last 24 hours; guardrail max_rounds_per_day {rails.max_rounds_per_day}",
        )
    params = rnd.vector_length - 1  # the last slot carries the sample count
    limit = rails.max_model_parameters
    if rnd.is_training and limit is not None and params > limit:
        raise _guardrail(
            policy, "model parameters", params, "max_model_parameters", limit, "exceeds"
        )
    accepted = set(rails.accepted_key_epochs) or node_epochs
    if rnd.key_epoch not in accepted:
        raise Refused(
            "guardrail",
            f"round {rnd.number}: key epoch {rnd.key_epoch[:16]}… is not among this bank's "
            "guardrail accepted_key_epochs",
        )


def check_feature_set(policy: PolicySnapshot, data_format: str, columns: Iterable[str]) -> None:
    """The policy's feature set is one this node computes, from columns its data holds.

    ``data_format`` names the bank's file format and ``columns`` its normalised frame's
    columns (``TransactionFormat.frame_columns``). Refused before any training, naming the
    feature set and what is missing, so a bank never uploads features it cannot compute.
    """
    name = _policy_name(policy)
    spec = FEATURE_SETS.get(policy.feature_set)
    if spec is None:
        raise Refused(
            "feature_set_unknown",
            f"{name}: feature set {policy.feature_set!r} is not one this node computes "
            f"(known: {', '.join(FEATURE_SETS)}); upgrade the node",
        )
    # A policy with cross-bank sketches reads their columns after the feature set's.
    sketched = sketch_feature_count(policy.counterparty_sketch)
    if policy.n_features != spec.n_features + sketched:
        with_sketch = f" plus {sketched} cross-bank sketch features" if sketched else ""
        raise Refused(
            "feature_set_mismatch",
            f"{name}: n_features {policy.n_features} does not match feature set "
            f"{spec.name!r}, which computes {spec.n_features}{with_sketch}",
        )
    if missing := spec.missing(columns):
        shown = ", ".join(missing[:6]) + (
            f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        )
        raise Refused(
            "feature_set_unusable",
            f"{name}: feature set {spec.name!r} needs columns this bank's {data_format} data "
            f"does not have: {shown}",
        )


def check_round(state: RosterState | None, rnd: RoundInfo) -> None:
    """Before training for or uploading to ``rnd``: everything the roster must vouch for."""
    if state is None:
        return
    check_policy_approved(state, rnd.policy)
    check_key_epoch(state, rnd.key_epoch)
    check_roster_floors(state, rnd.policy)


def check_dependencies(
    rnd: RoundInfo, refused: Mapping[str, str], dependencies: Iterable[RoundInfo]
) -> None:
    """Never train on a base (or statistics) round this bank refused or the banks dispute.

    ``refused`` is the node's own record (round -> why it refused that aggregate);
    ``dependencies`` the base and statistics rounds as the portal describes them now.
    """
    uses = {rnd.base_round: "base", rnd.stats_round: "statistics"}
    for number, what in uses.items():
        if number is not None and str(number) in refused:
            raise Refused(
                "base_refused",
                f"round {rnd.number}: its {what} round {number} was refused by this bank "
                f"({refused[str(number)]}); it will not train on it",
            )
    for dep in dependencies:
        if dep.number in uses and dep.disputed:
            raise Refused(
                "base_disputed",
                f"round {rnd.number}: its {uses[dep.number]} round {dep.number} is disputed "
                "(objected to by the roster's number of member banks and not cleared); "
                "it will not train on it",
            )


def cohort_floor(state: RosterState | None, policy: PolicySnapshot, rails: Guardrails) -> int:
    """Fewest distinct banks an aggregate must sum before this bank uses it."""
    return max(policy.min_banks, rails.min_cohort, state.min_banks if state else 0)


def check_manifest(
    state: RosterState | None, rnd: RoundInfo, manifest: Manifest | None, rails: Guardrails
) -> None:
    """Before using ``rnd``'s aggregate: who it sums, signed by whom, under which keys."""
    if manifest is None:
        raise Refused("manifest_mismatch", f"round {rnd.number} has no manifest")
    if manifest.round != rnd.number or manifest.key_epoch != rnd.key_epoch:
        raise Refused(
            "manifest_mismatch",
            f"round {rnd.number}: the manifest describes round {manifest.round} under key "
            f"epoch {manifest.key_epoch[:16]}…",
        )
    if len(manifest.inputs) > MAX_BANKS_PER_SUM:  # before a signature or a tag is computed
        raise Refused(
            "cohort",
            f"round {rnd.number}: the manifest lists {len(manifest.inputs)} inputs; no sum "
            f"may hold more than {MAX_BANKS_PER_SUM} banks",
        )
    floor = cohort_floor(state, rnd.policy, rails)
    if state is None:
        distinct = set(manifest.banks)
        if len(distinct) < floor or len(distinct) != len(manifest.inputs):
            raise Refused(
                "cohort",
                f"round {rnd.number}: the aggregate sums {len(manifest.inputs)} update(s) from "
                f"{len(distinct)} distinct bank(s); at least {floor} distinct needed",
            )
    else:
        check_key_epoch(state, manifest.key_epoch)
        entries = [(i.bank, _input_key(state, rnd.number, i)) for i in manifest.inputs]
        try:
            check_cohort(state, entries, floor)
        except RosterError as exc:
            raise Refused("cohort", f"round {rnd.number}: {exc}") from None
    # Who sent each input is settled above (signatures under roster keys); now what they
    # signed that they spent.
    check_privacy_claims(rnd, manifest)


def check_privacy_claims(rnd: RoundInfo, manifest: Manifest) -> None:
    """Under a DP training policy every input must carry a signed epsilon within its target.

    The portal refuses such uploads, but an operator could still sum one in; the signature
    check then proves the bank itself claimed that epsilon.
    """
    policy = rnd.policy
    if not rnd.is_training or not policy.dp_enabled or policy.dp_target_epsilon is None:
        return
    limit = policy.dp_target_epsilon * (1 + 1e-6)
    for item in manifest.inputs:
        if item.epsilon is None or item.epsilon > limit:
            claimed = "no epsilon" if item.epsilon is None else f"epsilon {item.epsilon:g}"
            raise Refused(
                "input_privacy",
                f"round {rnd.number}: bank {item.bank!r} sent {claimed} under a DP policy whose "
                f"budget is {policy.dp_target_epsilon:g}; its update must not be used",
            )


def _input_key(state: RosterState, number: int, item: ManifestInput) -> str:
    """The roster key of an input's bank, once its signature verifies under that key."""
    bank, digest = item.bank, item.digest
    key = state.signing_key_of(bank)
    if key is None:
        member = state.member(bank)
        what = "is not on the roster" if member is None else f"is {member.status}"
        raise Refused(
            "cohort", f"round {number}: the aggregate includes bank {bank!r}, which {what}"
        )
    valid = update_signature_valid(
        key,
        number,
        bank,
        digest,
        item.signature,
        epsilon=item.epsilon,
        budget_left=item.budget_left,
    )
    if not valid:
        raise Refused(
            "input_signature",
            f"round {number}: the update of bank {bank!r} ({digest[:16]}…) is not signed "
            "under its roster key",
        )
    return key


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for piece in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(piece)
    return digest.hexdigest()


def check_aggregate_file(path: Path, manifest: Manifest) -> None:
    """The downloaded bytes are the aggregate the manifest names."""
    actual = file_sha256(path)
    if actual != manifest.aggregate_digest:
        raise Refused(
            "aggregate_digest",
            f"round {manifest.round}: the downloaded aggregate hashes to {actual[:16]}…, the "
            f"manifest names {manifest.aggregate_digest[:16]}…",
        )
