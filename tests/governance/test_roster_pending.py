"""pending_approvals and describe: what a bank sees before it signs a proposed change."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from roster_helpers import Ceremony, new_bank

from governance import (
    AdmitBank,
    ChangeMinBanks,
    RosterError,
    RotateBankKeys,
    SuspendBank,
    describe,
    pending_approvals,
    public_key_b64,
)
from governance.encoding import key_hint


def test_a_fresh_admission_shows_who_signed_and_who_is_missing(ceremony: Ceremony) -> None:
    epsilon = new_bank("epsilon")
    version = ceremony["alpha"].sign(ceremony.propose(AdmitBank(epsilon.member())))

    pending = pending_approvals(ceremony.state, version)

    assert (pending.needed, pending.signed, pending.missing) == (
        3,
        ("alpha",),
        ("beta", "gamma", "delta"),
    )
    assert pending.missing_count == 2 and not pending.complete
    assert pending.proof_of == "epsilon" and not pending.proof_ok

    done = epsilon.sign(ceremony["gamma"].sign(ceremony["beta"].sign(version)))
    assert pending_approvals(ceremony.state, done).complete


def test_a_founding_ceremony_shows_which_founders_have_signed(ceremony: Ceremony) -> None:
    partial = ceremony.genesis.with_signature("delta", "")

    pending = pending_approvals(None, partial)

    assert pending.needed == 4 and pending.missing == ("delta",) and not pending.complete


def test_pending_refuses_a_version_that_can_never_become_valid(ceremony: Ceremony) -> None:
    with pytest.raises(RosterError, match="roster version 1: bank 'zeta' is not a member"):
        pending_approvals(ceremony.state, ceremony.propose(SuspendBank("zeta")))


def test_an_admission_is_described_in_plain_words(ceremony: Ceremony) -> None:
    epsilon = new_bank("epsilon")
    hint = key_hint(epsilon.public)

    text = describe(AdmitBank(epsilon.member()), ceremony.state)

    assert text == (
        f"Admit bank 'epsilon' (Epsilon Bank) with signing key {hint}; needs 3 of 4 "
        "approvals, plus a signature from bank 'epsilon' under its new signing key"
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (SuspendBank("delta", "late uploads"), "Suspend bank 'delta' (Delta Bank) because: late"),
        (ChangeMinBanks(4), "Change min_banks from 3 to 4; needs 3 of 4 approvals"),
        (
            RotateBankKeys("beta", signing_key=public_key_b64(Ed25519PrivateKey.generate())),
            "Rotate bank 'beta' (Beta Bank) to new signing key",
        ),
    ],
)
def test_every_change_is_described_with_its_subject(
    ceremony: Ceremony, change: object, words: str
) -> None:
    assert words in describe(change, ceremony.state)  # type: ignore[arg-type]


def test_the_genesis_is_described_with_its_founders(ceremony: Ceremony) -> None:
    text = describe(ceremony.genesis.change, None)

    assert text.startswith("Found consortium 'acme' with 'alpha' (Alpha Bank), 'beta'")
    assert text.endswith("needs all 4 founders' signatures")
