"""The roster chain: a founding ceremony, threshold-approved changes, and every forgery refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from roster_helpers import EPOCH, NOW, Bank, Ceremony, charter_of, new_bank, signed

from governance import (
    AdmitBank,
    ApprovePolicy,
    Member,
    PolicyApproval,
    RegisterKeyEpoch,
    ReinstateBank,
    RetireKeyEpoch,
    RevokeBank,
    RosterError,
    RosterState,
    RosterVersion,
    RotateBankKeys,
    SuspendBank,
    apply,
    genesis_version,
    parse_version_json,
    public_key_b64,
    roster_message,
    sign_version,
    verify_chain,
    verify_genesis,
    version_hash,
)

POLICY = ApprovePolicy(PolicyApproval("fraud-mlp", 1, "cd" * 32))


def admit_epsilon(c: Ceremony, *approvers: str) -> tuple[RosterVersion, Member]:
    epsilon = new_bank("epsilon")
    version = c.propose(AdmitBank(epsilon.member()))
    return signed(version, epsilon, *(c[a] for a in approvers)), epsilon.member()


def refused(state: RosterState, version: RosterVersion) -> RosterError:
    with pytest.raises(RosterError) as info:
        apply(state, version)
    return info.value


def test_four_founding_banks_found_a_consortium_when_all_four_sign(ceremony: Ceremony) -> None:
    state = verify_chain(ceremony.genesis, [])

    assert state.version == 0
    assert state.head_hash == version_hash(ceremony.genesis)
    assert [m.bank_id for m in state.active_members()] == ["alpha", "beta", "gamma", "delta"]
    assert state.signing_key_of("beta") == ceremony["beta"].public
    assert state.key_epoch_in_force(EPOCH) and state.min_banks == 3


def test_a_genesis_missing_a_founders_signature_is_refused(ceremony: Ceremony) -> None:
    unsigned = genesis_version(ceremony.state.charter(), NOW)
    partial = signed(unsigned, *(ceremony[b] for b in ("alpha", "beta", "gamma")))

    with pytest.raises(RosterError, match=r"roster version 0: .*not yet signed: delta") as info:
        verify_genesis(partial)
    assert info.value.code == "under_signed"


def test_a_genesis_signed_by_a_founder_under_another_key_is_refused(ceremony: Ceremony) -> None:
    genesis = ceremony.genesis.with_signature(
        "delta", sign_version(ceremony.genesis, "delta", Ed25519PrivateKey.generate())
    )

    with pytest.raises(RosterError, match="delta: signature does not verify under its roster key"):
        verify_genesis(genesis)


def test_a_genesis_with_fewer_than_three_founders_is_refused() -> None:
    banks = [new_bank("alpha"), new_bank("beta")]
    genesis = signed(genesis_version(charter_of(banks), NOW), *banks)

    with pytest.raises(RosterError, match="a genesis needs at least 3 founding members"):
        verify_genesis(genesis)


def test_admitting_a_bank_takes_three_of_four_approvals_and_its_own_signature(
    ceremony: Ceremony,
) -> None:
    version, epsilon = admit_epsilon(ceremony, "alpha", "beta", "gamma")

    state = verify_chain(ceremony.genesis, [version])

    assert state.version == 1 and state.head_hash == version_hash(version)
    assert state.member("epsilon") == epsilon
    assert len(state.active_members()) == 5


def test_two_approvals_of_four_are_not_enough(ceremony: Ceremony) -> None:
    version, _ = admit_epsilon(ceremony, "alpha", "beta")

    error = refused(ceremony.state, version)

    assert error.code == "under_signed"
    assert "roster version 1: has 2 valid approval(s) of 3 needed" in str(error)
    assert "not yet signed: gamma, delta" in str(error)


def test_admitting_a_bank_without_its_own_signature_is_refused(ceremony: Ceremony) -> None:
    epsilon = new_bank("epsilon")
    version = signed(ceremony.propose(AdmitBank(epsilon.member())), *ceremony.banks.values())

    error = refused(ceremony.state, version)

    assert error.code == "missing_proof"
    assert "'epsilon' has not signed under the signing key it declares" in str(error)


@pytest.mark.parametrize("forgery", ["random-key", "garbage", "truncated"])
def test_a_forged_signature_does_not_count(ceremony: Ceremony, forgery: str) -> None:
    version, _ = admit_epsilon(ceremony, "alpha", "beta")
    real = sign_version(version, "gamma", ceremony["gamma"].key)
    fake = {
        "random-key": sign_version(version, "gamma", Ed25519PrivateKey.generate()),
        "garbage": "not base64!",
        "truncated": real[:40],
    }[forgery]

    error = refused(ceremony.state, version.with_signature("gamma", fake))

    assert "gamma: signature does not verify under its roster key" in str(error)


def test_a_signature_from_a_non_member_does_not_count(ceremony: Ceremony) -> None:
    version, _ = admit_epsilon(ceremony, "alpha", "beta")
    mallory = new_bank("mallory")

    error = refused(ceremony.state, mallory.sign(version))

    assert "mallory: not a member" in str(error)


def test_one_signature_listed_under_two_bank_ids_counts_once(ceremony: Ceremony) -> None:
    version, _ = admit_epsilon(ceremony, "alpha", "beta")
    copied = version.with_signature("gamma", version.signatures["alpha"])

    error = refused(ceremony.state, copied)

    assert "has 2 valid approval(s) of 3 needed" in str(error)


def test_a_bank_listed_twice_in_the_json_is_refused(ceremony: Ceremony) -> None:
    version, _ = admit_epsilon(ceremony, "alpha", "beta")
    text = json.dumps(version.to_dict())
    alpha = version.signatures["alpha"]
    duplicated = text.replace('"signatures": {', f'"signatures": {{"alpha": "{alpha}", ', 1)

    with pytest.raises(RosterError, match="duplicate JSON key 'alpha'"):
        parse_version_json(duplicated)


def test_a_suspended_banks_signature_does_not_count(ceremony: Ceremony) -> None:
    suspend = signed(
        ceremony.propose(SuspendBank("delta", "audit finding")), *_banks(ceremony, "abg")
    )
    state = apply(ceremony.state, suspend)
    assert state.signing_key_of("delta") is None

    version = signed(ceremony.propose(POLICY, state), ceremony["alpha"], ceremony["delta"])
    error = refused(state, version)

    assert "delta: bank is suspended" in str(error)
    assert "has 1 valid approval(s) of 2 needed" in str(error)


def test_a_bank_does_not_approve_its_own_suspension(ceremony: Ceremony) -> None:
    version = signed(ceremony.propose(SuspendBank("delta")), *_banks(ceremony, "abd"))

    error = refused(ceremony.state, version)

    assert "delta: a bank does not approve a change about itself" in str(error)


def test_a_reinstated_bank_approves_again(ceremony: Ceremony) -> None:
    suspend = signed(ceremony.propose(SuspendBank("delta")), *_banks(ceremony, "abg"))
    state = apply(ceremony.state, suspend)
    reinstate = signed(ceremony.propose(ReinstateBank("delta"), state), *_banks(ceremony, "ab"))
    state = apply(state, reinstate)

    policy = signed(ceremony.propose(POLICY, state), *_banks(ceremony, "abd"))

    assert apply(state, policy).is_policy_approved("fraud-mlp", 1, "cd" * 32)


def test_a_signature_under_a_rotated_away_key_does_not_count(ceremony: Ceremony) -> None:
    new_key = Ed25519PrivateKey.generate()
    rotate = ceremony.propose(RotateBankKeys("alpha", signing_key=public_key_b64(new_key)))
    rotate = signed(rotate, *_banks(ceremony, "bgd"))
    rotate = rotate.with_signature("alpha", sign_version(rotate, "alpha", new_key))
    state = apply(ceremony.state, rotate)
    assert state.signing_key_of("alpha") == public_key_b64(new_key)

    version = signed(ceremony.propose(POLICY, state), *_banks(ceremony, "abg"))
    error = refused(state, version)

    assert "alpha: signature does not verify under its roster key" in str(error)
    renewed = version.with_signature("alpha", sign_version(version, "alpha", new_key))
    assert apply(state, renewed).version == 2


def test_rotating_a_signing_key_without_the_new_keys_signature_is_refused(
    ceremony: Ceremony,
) -> None:
    new_key = Ed25519PrivateKey.generate()
    rotate = ceremony.propose(RotateBankKeys("alpha", signing_key=public_key_b64(new_key)))
    # Signed by alpha under its *old* key: that is no proof it holds the new one.
    rotate = signed(rotate, *_banks(ceremony, "abgd"))

    error = refused(ceremony.state, rotate)

    assert error.code == "missing_proof"
    assert "'alpha' has not signed under the signing key it declares" in str(error)


def test_versions_out_of_order_are_refused(ceremony: Ceremony) -> None:
    first = signed(ceremony.propose(POLICY), *_banks(ceremony, "abg"))
    state = apply(ceremony.state, first)
    second = signed(ceremony.propose(RegisterKeyEpoch("ef" * 32), state), *_banks(ceremony, "abg"))

    with pytest.raises(RosterError, match="roster version 2: number 2 does not follow version 0"):
        verify_chain(ceremony.genesis, [second, first])
    assert verify_chain(ceremony.genesis, [first, second]).version == 2


def test_a_version_replayed_at_the_end_of_the_chain_is_refused(ceremony: Ceremony) -> None:
    first = signed(ceremony.propose(POLICY), *_banks(ceremony, "abg"))
    state = apply(ceremony.state, first)
    again = dataclasses.replace(first, number=2, previous_hash=state.head_hash)

    with pytest.raises(RosterError, match="number 1 does not follow version 1"):
        verify_chain(ceremony.genesis, [first, first])
    with pytest.raises(RosterError, match="policy 'fraud-mlp' version 1 is already approved"):
        apply(state, again)


def test_signatures_from_one_version_do_not_carry_over_to_another(ceremony: Ceremony) -> None:
    register = signed(ceremony.propose(RegisterKeyEpoch("ef" * 32)), *_banks(ceremony, "abg"))
    state = apply(ceremony.state, register)
    retire = ceremony.propose(RetireKeyEpoch("ef" * 32), state)
    retire = dataclasses.replace(retire, signatures=register.signatures)

    error = refused(state, retire)

    assert "has 0 valid approval(s) of 3 needed" in str(error)


def test_a_version_from_another_consortium_is_refused(ceremony: Ceremony) -> None:
    version = dataclasses.replace(ceremony.propose(POLICY), consortium_id="other")
    version = signed(version, *_banks(ceremony, "abgd"))

    error = refused(ceremony.state, version)

    assert error.code == "wrong_consortium"
    assert "belongs to consortium 'other', not 'acme'" in str(error)


def test_the_signed_message_names_the_consortium_and_version() -> None:
    assert roster_message("acme", "ab" * 32) == b"consortium-roster-v1\nacme\n" + b"ab" * 32
    assert roster_message("acme", "ab" * 32) != roster_message("other", "ab" * 32)


def test_a_field_changed_after_signing_is_refused(ceremony: Ceremony) -> None:
    version, member = admit_epsilon(ceremony, "alpha", "beta", "gamma")
    renamed = dataclasses.replace(member, name="Totally Legit Bank")
    tampered = dataclasses.replace(version, change=AdmitBank(renamed))
    later = dataclasses.replace(version, created_at="2026-12-02T12:00:00+00:00")

    for forged in (tampered, later):
        error = refused(ceremony.state, forged)
        assert "has 0 valid approval(s) of 3 needed" in str(error)


def test_a_tampered_previous_hash_is_refused(ceremony: Ceremony) -> None:
    version = dataclasses.replace(ceremony.propose(POLICY), previous_hash="00" * 32)

    with pytest.raises(RosterError, match="previous_hash 0000000000000000… is not the hash"):
        apply(ceremony.state, signed(version, *_banks(ceremony, "abgd")))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (SuspendBank("zeta"), "bank 'zeta' is not a member of the roster"),
        (ReinstateBank("alpha"), "bank 'alpha' is active; it cannot become active"),
        (RetireKeyEpoch("ef" * 32), "is not in force"),
        (RegisterKeyEpoch(EPOCH), "is already in force"),
    ],
)
def test_a_change_that_does_not_fit_the_roster_is_refused(
    ceremony: Ceremony, change: object, reason: str
) -> None:
    version = signed(ceremony.propose(change), *_banks(ceremony, "abgd"))

    error = refused(ceremony.state, version)

    assert error.code == "bad_change" and reason in str(error)


def test_a_bank_cannot_be_admitted_with_a_members_key(ceremony: Ceremony) -> None:
    copycat = dataclasses.replace(new_bank("epsilon").member(), signing_key=ceremony["beta"].public)

    error = refused(ceremony.state, ceremony.propose(AdmitBank(copycat)))

    assert "that signing key already belongs to bank 'beta'" in str(error)


def test_a_revoked_bank_cannot_be_reinstated_nor_its_id_reused(ceremony: Ceremony) -> None:
    revoke = signed(ceremony.propose(RevokeBank("delta", "left")), *_banks(ceremony, "abg"))
    state = apply(ceremony.state, revoke)

    back = refused(state, ceremony.propose(ReinstateBank("delta"), state))
    reuse = refused(state, ceremony.propose(AdmitBank(new_bank("delta").member()), state))

    assert "bank 'delta' is revoked; it cannot become active" in str(back)
    assert "already on the roster (ids are never reused)" in str(reuse)


def test_a_chain_survives_a_trip_through_json(ceremony: Ceremony) -> None:
    version, _ = admit_epsilon(ceremony, "alpha", "beta", "gamma")
    genesis = parse_version_json(json.dumps(ceremony.genesis.to_dict()))
    parsed = parse_version_json(json.dumps(version.to_dict()).encode())

    assert version_hash(parsed) == version_hash(version)
    assert verify_chain(genesis, [parsed]).member("epsilon") is not None


def _banks(ceremony: Ceremony, letters: str) -> list[Bank]:
    """Founders by initial: 'abg' is alpha, beta, gamma."""
    by_initial = {b[0]: ceremony[b] for b in ("alpha", "beta", "gamma", "delta")}
    return [by_initial[letter] for letter in letters]
