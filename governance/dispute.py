"""Disputed rounds: counted from the banks' signed objections, cleared only by their signatures.

A round is *disputed* when at least the charter's approval number of distinct active
members signed an objection naming it, and *cleared* when as many signed the canonical
clearance message for it. Both are derived here from signatures alone, so an operator who
stores or relays them can neither invent nor hide either state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.charter import RosterState
from governance.encoding import check_int, check_slug
from governance.errors import RosterError
from governance.objection import Objection, verify_objection
from he.signing import sign, verify

CLEARANCE_DOMAIN = b"consortium-clear-dispute-v1\n"


def clearance_message(consortium_id: str, round_number: int) -> bytes:
    """The bytes a bank signs to clear the dispute of one round of one consortium.

    The domain prefix keeps it apart from roster, objection and upload signatures; the
    consortium id and round number bind it so that it cannot be replayed on another.
    """
    check_slug(consortium_id, "clearance.consortium_id")
    check_int(round_number, "clearance.round_number", minimum=1)
    text = f"clear dispute of round {round_number} in consortium {consortium_id}"
    return CLEARANCE_DOMAIN + text.encode("utf-8")


def sign_clearance(consortium_id: str, round_number: int, private_key: Ed25519PrivateKey) -> str:
    """This bank's base64 Ed25519 signature clearing the dispute of ``round_number``."""
    return sign(private_key, clearance_message(consortium_id, round_number))


def dispute_threshold(state: RosterState) -> int:
    """How many distinct active members dispute a round, and how many clear it.

    The roster's approval rule: a strict majority of the active members (never fewer than
    ``k_min``), so a dispute and its clearance always share at least one bank.
    """
    return max(1, state.rule.required(len(state.active_members())))


@dataclass(frozen=True)
class Dispute:
    """Where a round stands: who objected to it and who signed its clearance (valid ones)."""

    round_number: int
    threshold: int
    objectors: tuple[str, ...]
    clearers: tuple[str, ...] = ()
    ignored: dict[str, str] = field(default_factory=dict)

    @property
    def objected(self) -> bool:
        """Enough banks objected: the round is disputed unless it was cleared."""
        return len(self.objectors) >= self.threshold

    @property
    def cleared(self) -> bool:
        return self.objected and len(self.clearers) >= self.threshold

    @property
    def disputed(self) -> bool:
        return self.objected and not self.cleared

    def as_dict(self) -> dict[str, object]:
        return {
            "round": self.round_number,
            "threshold": self.threshold,
            "objectors": list(self.objectors),
            "clearers": list(self.clearers),
            "disputed": self.disputed,
            "cleared": self.cleared,
        }


def objectors_of(
    state: RosterState, round_number: int, signed: Iterable[tuple[Objection, str]]
) -> tuple[str, ...]:
    """Distinct active members whose objection to ``round_number`` verifies under their key."""
    banks: set[str] = set()
    for objection, signature in signed:
        key = state.signing_key_of(objection.bank_id)
        if (
            objection.round_number == round_number
            and objection.consortium_id == state.consortium_id
            and key is not None
            and verify_objection(objection, signature, key)
        ):
            banks.add(objection.bank_id)
    return tuple(sorted(banks))


def clearance_refusal(
    state: RosterState, round_number: int, bank_id: str, signature: str
) -> str | None:
    """Why ``bank_id``'s clearance of ``round_number`` does not count, or None when it does."""
    key = state.signing_key_of(bank_id)
    if key is None:
        member = state.member(bank_id)
        return "not a member" if member is None else f"bank is {member.status}"
    if not verify(key, clearance_message(state.consortium_id, round_number), signature):
        return (
            f"signature does not verify under its roster key over 'clear dispute of round "
            f"{round_number} in consortium {state.consortium_id}' (forged, or signed for "
            "another round or consortium)"
        )
    return None


def dispute_of(
    state: RosterState,
    round_number: int,
    objections: Iterable[tuple[Objection, str]],
    clearances: Mapping[str, str],
) -> Dispute:
    """The dispute state of ``round_number`` from signed objections and clearances.

    ``clearances`` maps bank id to signature (one entry per bank, so none counts twice).
    """
    clearers: list[str] = []
    ignored: dict[str, str] = {}
    for bank_id, signature in sorted(clearances.items()):
        why = clearance_refusal(state, round_number, bank_id, signature)
        if why is None:
            clearers.append(bank_id)
        else:
            ignored[bank_id] = why
    return Dispute(
        round_number=round_number,
        threshold=dispute_threshold(state),
        objectors=objectors_of(state, round_number, objections),
        clearers=tuple(clearers),
        ignored=ignored,
    )


def check_clearance(state: RosterState, round_number: int, bank_id: str, signature: str) -> None:
    """Raise ``RosterError`` (code ``bad_clearance``) unless the clearance counts."""
    why = clearance_refusal(state, round_number, bank_id, signature)
    if why is not None:
        raise RosterError(
            f"clearance of round {round_number} by bank {bank_id!r} refused: {why}",
            code="bad_clearance",
        )
