"""The founding charter's draft: what the operator proposes and every founder signs."""

from __future__ import annotations

from collections.abc import Sequence

from governance.charter import Charter, Member, PolicyApproval, PrivacyFloor, Rule
from governance.encoding import MIN_BANKS_FLOOR
from governance.version import RosterVersion, genesis_version

# Two thirds of the active members, and never fewer than two banks.
DEFAULT_RULE = Rule(threshold_numerator=2, threshold_denominator=3, k_min=2)


def genesis_draft(
    consortium_id: str,
    members: Sequence[Member],
    *,
    key_epochs: Sequence[str],
    created_at: str,
    policies: Sequence[PolicyApproval] = (),
    min_banks: int = MIN_BANKS_FLOOR,
    rule: Rule = DEFAULT_RULE,
    privacy: PrivacyFloor | None = None,
) -> RosterVersion:
    """The unsigned version 0 every founder is asked to sign.

    Without a ``privacy`` floor the charter requires no differential privacy (each bank
    may still require it in its own guardrails). Every field is checked by the charter
    itself, so a bad draft raises ``RosterError`` naming the field.
    """
    charter = Charter(
        consortium_id=consortium_id,
        members=tuple(members),
        rule=rule,
        min_banks=min_banks,
        key_epochs=tuple(key_epochs),
        privacy=privacy or PrivacyFloor(dp_required=False),
        policies=tuple(policies),
    )
    return genesis_version(charter, created_at)
