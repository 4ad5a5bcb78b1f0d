"""Four banks' nodes run a v2 round (real TenSEAL, real roster keys) and refuse every lie."""

from __future__ import annotations

import base64
import dataclasses
import io
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.checks import Refused
from bank_node.secagg import answer_unmask, mask_keys_post, masked_update
from bank_node.secagg_record import aggregate_chosen, check_record, recompute_aggregate
from bank_node.secagg_state import round_file, round_path
from he.codec import pack_update
from he.keys import load_public_context
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal
from he.seeded import decrypt_vector2
from he.signing import sign
from protocol import (
    AdvertisedKey,
    Manifest,
    PolicySnapshot,
    Reveal,
    SecAggRecord,
    UnmaskRequest,
)
from tests.bank_node.secagg_nodes import (
    BANKS,
    BANKS_SORTED,
    Federation,
    federation,
    manifest_for,
    portal_correction,
    portal_sum,
    v2_round,
)
from tests.governance.roster_helpers import new_bank
from tests.protocol.messages import policy_dict

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
SURVIVORS = ("alpha", "beta", "gamma")
DROPPED = ("delta",)


@dataclass
class Played:
    """A round played to the end: delta advertised a key, then dropped before uploading."""

    fed: Federation
    secret: SealKit
    public: SealKit
    packed: dict[str, np.ndarray]
    uploads: dict[str, Path]
    reveals: list[Reveal]
    aggregate: Path
    manifest: Manifest


@pytest.fixture(scope="module")
def played(ckks, tmp_path_factory: pytest.TempPathFactory) -> Played:
    tmp = tmp_path_factory.mktemp("secagg")
    secret = kit_from_tenseal(ckks.secret, PARAMS)
    public = kit_from_tenseal(load_public_context(ckks.public_bytes, PARAMS), PARAMS)
    fed = federation(tmp, lambda _: v2_round(7, ckks.fingerprint))
    rng = np.random.default_rng(12)
    packed, uploads = {}, {}
    for i, bank in enumerate(BANKS):  # delta too: it drops only after the sharing phase
        keys = fed.cohort_keys(bank, BANKS_SORTED)
        fed.adopt(bank, keys)
        if bank in DROPPED:
            continue
        packed[bank] = pack_update(rng.normal(0, 0.2, 300), 50 + 25 * i, 1.25)
        uploads[bank] = tmp / f"{bank}.ckks2"
        masked_update(
            secret, packed[bank], fed.roster, fed.rnd, bank, keys, uploads[bank], fed.homes[bank]
        )
    reveals = [fed.reveal(bank, SURVIVORS, DROPPED) for bank in SURVIVORS]
    terms = portal_correction(fed, reveals, SURVIVORS, DROPPED)
    aggregate = tmp / "aggregate.ckks2"
    digest = portal_sum(fed, public, uploads, terms, aggregate)
    manifest = manifest_for(fed, uploads, digest, SURVIVORS, DROPPED, reveals)
    return Played(fed, secret, public, packed, uploads, reveals, aggregate, manifest)


@pytest.fixture
def fresh(ckks, tmp_path: Path) -> Federation:
    """A round whose four banks posted their keys and took the final keys; nobody revealed."""
    fed = federation(tmp_path, lambda _: v2_round(9, ckks.fingerprint))
    for bank in BANKS:
        fed.adopt(bank, fed.cohort_keys(bank, BANKS_SORTED))
    return fed


def _refused(reason: str, action: Callable[[], object]) -> Refused:
    with pytest.raises(Refused) as caught:
        action()
    assert caught.value.reason == reason, caught.value.message
    return caught.value


# --- the whole round -------------------------------------------------------------------------


def test_the_survivors_fedavg_decrypts_exactly_after_one_dropout(played: Played, tmp_path):
    fed, manifest = played.fed, played.manifest
    check_record(fed.roster, fed.rnd, manifest, fed.cohort_keys("alpha", BANKS_SORTED))
    recomputed = tmp_path / "recomputed.ckks2"
    recompute_aggregate(played.secret, fed.roster, fed.rnd, manifest, played.uploads, recomputed)
    assert recomputed.read_bytes() == played.aggregate.read_bytes()
    total = decrypt_vector2(played.secret, io.BytesIO(played.aggregate.read_bytes()))
    plain = np.sum([played.packed[b] for b in SURVIVORS], axis=0)
    fedavg, expected = total[:-2] / total[-2], plain[:-2] / plain[-2]
    assert np.max(np.abs(fedavg - expected)) < 1e-6
    assert abs(total[-1] - 3 * 1.25) < 1e-4  # the integrity slots add up as in v1


def test_one_banks_upload_alone_decrypts_to_noise(played: Played):
    alone = decrypt_vector2(played.secret, io.BytesIO(played.uploads["alpha"].read_bytes()))
    assert np.max(np.abs(alone - played.packed["alpha"])) > 1e6


# --- what a node refuses before it masks -----------------------------------------------------


def test_a_mask_key_whose_signature_does_not_verify_under_the_roster_key_is_refused(fresh):
    keys = fresh.cohort_keys("alpha", BANKS_SORTED)
    forged = dataclasses.replace(
        keys.keys[1],
        signature=sign(new_bank("mallory").key, keys.keys[1].message("acme", 9)),
    )
    keys = dataclasses.replace(keys, keys=(keys.keys[0], forged, *keys.keys[2:]))
    error = _refused("mask_key_signature", lambda: fresh.adopt("alpha", keys))
    assert "'beta'" in error.message


@pytest.mark.parametrize(
    "cohort",
    [("alpha", "beta", "gamma"), (*BANKS_SORTED, "mallory"), ("alpha", "alpha", "beta", "gamma")],
    ids=["a member left out", "a stranger added", "a member twice"],
)
def test_a_cohort_that_is_not_the_rosters_active_members_is_refused(fresh, cohort):
    keys = dataclasses.replace(fresh.cohort_keys("alpha", BANKS_SORTED), cohort=cohort)
    _refused("secagg_cohort", lambda: fresh.adopt("alpha", keys))


def test_final_keys_without_this_bank_or_below_the_threshold_are_refused(fresh):
    _refused("secagg_keys", lambda: fresh.adopt("delta", fresh.cohort_keys("delta", SURVIVORS)))
    small = fresh.cohort_keys("alpha", ("alpha", "beta"))
    _refused("secagg_keys", lambda: fresh.adopt("alpha", small))


@pytest.mark.parametrize(
    "change",
    [
        {"mask_public_key": "a2V5\n"},
        {"mask_public_key": "c2hvcnQ="},
        {"seed_commitment": "ab\ncd"},
    ],
    ids=["a newline in the key", "a short key", "a commitment that is not hex"],
)
def test_a_malformed_advertised_key_is_refused_not_a_crash(fresh, change):
    keys = fresh.cohort_keys("alpha", BANKS_SORTED)
    bad = dataclasses.replace(keys.keys[2], **change)
    keys = dataclasses.replace(keys, keys=(*keys.keys[:2], bad, keys.keys[3]))
    error = _refused("secagg_keys", lambda: fresh.adopt("alpha", keys))
    assert "'delta'" in error.message  # keys are sorted: the third is delta's


@pytest.mark.parametrize("box", [None, 3], ids=["no box", "a box that is not text"])
def test_final_keys_without_a_readable_box_from_every_peer_are_refused(fresh, box):
    keys = fresh.cohort_keys("alpha", BANKS_SORTED)
    boxes = {k: v for k, v in keys.shares_for_you.items() if k != "gamma"}
    if box is not None:
        boxes["gamma"] = box
    keys = dataclasses.replace(keys, shares_for_you=boxes)
    error = _refused("secagg_keys", lambda: fresh.adopt("alpha", keys))
    assert "'gamma'" in error.message


def test_final_keys_that_replace_this_banks_own_mask_key_are_refused(fresh):
    keys = fresh.cohort_keys("alpha", BANKS_SORTED)
    beta = fresh.advertised("beta")
    swapped = dataclasses.replace(beta, bank="alpha", signature=beta.signature)
    message = swapped.message("acme", 9)  # re-signed by alpha's key: only the key differs
    swapped = dataclasses.replace(swapped, signature=sign(fresh.ceremony["alpha"].key, message))
    keys = dataclasses.replace(keys, keys=(swapped, *keys.keys[1:]))
    error = _refused("secagg_keys", lambda: fresh.adopt("alpha", keys))
    assert "another mask key" in error.message


# --- unmasking ---------------------------------------------------------------------------


def test_the_same_unmask_request_gets_the_same_reveal_and_a_different_one_is_refused(played):
    fed = played.fed
    assert fed.reveal("alpha", SURVIVORS, DROPPED) == played.reveals[0]
    error = _refused("unmask_changed", lambda: fed.reveal("alpha", BANKS_SORTED, ()))
    assert "already answered" in error.message
    assert fed.reveal("alpha", SURVIVORS, DROPPED) == played.reveals[0]


def test_a_request_naming_a_bank_both_survivor_and_dropped_is_refused(fresh):
    _refused("unmask_both_ways", lambda: fresh.reveal("alpha", BANKS_SORTED, ("delta",)))
    assert round_file(fresh.homes["alpha"], 9).reveal is None


@pytest.mark.parametrize(
    ("survivors", "dropped"),
    [
        (("alpha", "beta", "gamma", "mallory"), ("delta",)),
        (("alpha", "beta", "gamma"), ()),
        (("alpha", "beta"), ("gamma", "delta")),
        (("beta", "gamma", "delta"), ("alpha",)),
    ],
    ids=["survivor outside U1", "dropped not U1 minus survivors", "below threshold", "not me"],
)
def test_a_request_that_does_not_fit_u1_is_refused(fresh, survivors, dropped):
    _refused("unmask_request", lambda: fresh.reveal("alpha", survivors, dropped))


def test_a_request_for_another_round_is_refused(fresh):
    request = UnmaskRequest(8, 3, SURVIVORS, DROPPED)
    home = fresh.homes["alpha"]
    action = lambda: answer_unmask(fresh.roster, fresh.rnd, fresh.me("alpha"), request, home)  # noqa: E731
    _refused("unmask_request", action)


def test_a_tampered_share_box_is_refused_when_the_node_opens_it(ckks, tmp_path):
    fed = federation(tmp_path, lambda _: v2_round(9, ckks.fingerprint))
    keys = fed.cohort_keys("alpha", BANKS_SORTED)
    box = bytearray(base64.b64decode(keys.shares_for_you["beta"]))
    box[-1] ^= 1
    tampered = {**keys.shares_for_you, "beta": base64.b64encode(bytes(box)).decode()}
    fed.adopt("alpha", dataclasses.replace(keys, shares_for_you=tampered))
    error = _refused("share_unreadable", lambda: fed.reveal("alpha", SURVIVORS, DROPPED))
    assert "beta" in error.message


def test_a_reveal_gives_key_shares_of_the_dropped_and_seed_shares_of_the_survivors(played):
    reveal = played.reveals[1]
    assert reveal.bank == "beta" and set(reveal.key_shares) == {"delta"}
    assert set(reveal.seed_shares) == set(SURVIVORS)
    message = reveal.message(played.fed.roster.consortium_id, 7)
    assert sign(played.fed.ceremony["beta"].key, message) == reveal.signature


# --- the published record ----------------------------------------------------------------


def _with_record(manifest: Manifest, **changes: Any) -> Manifest:
    assert manifest.secure_aggregation is not None
    record = dataclasses.replace(manifest.secure_aggregation, **changes)
    return dataclasses.replace(manifest, secure_aggregation=record)


def _forged_reveal(record: SecAggRecord) -> tuple[Reveal, ...]:
    first = record.reveals[0]
    shares = {**first.seed_shares, "beta": record.reveals[1].seed_shares["beta"]}
    return (dataclasses.replace(first, seed_shares=shares), *record.reveals[1:])


def _forged_key(record: SecAggRecord) -> tuple[AdvertisedKey, ...]:
    stranger = new_bank("mallory").key
    bad = dataclasses.replace(record.keys[2], signature=sign(stranger, b"anything"))
    return (*record.keys[:2], bad, *record.keys[3:])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: {"reveals": r.reveals[:2]}, "secagg_record"),
        (lambda r: {"reveals": _forged_reveal(r)}, "reveal_signature"),
        (lambda r: {"keys": _forged_key(r)}, "mask_key_signature"),
        (lambda r: {"dropped": ()}, "secagg_record"),
        (lambda r: {"survivors": BANKS_SORTED, "dropped": ()}, "secagg_record"),
        (lambda r: {"threshold": 2}, "secagg_record"),
        (lambda r: {"cohort": ("alpha", "beta", "gamma")}, "secagg_cohort"),
    ],
    ids=[
        "too few reveals",
        "a forged reveal",
        "a forged mask key",
        "dropped not U1 minus survivors",
        "survivors not the inputs",
        "a lower threshold",
        "another cohort",
    ],
)
def test_a_record_that_does_not_verify_is_refused_before_decryption(played, change, reason):
    record = played.manifest.secure_aggregation
    manifest = _with_record(played.manifest, **change(record))
    _refused(reason, lambda: check_record(played.fed.roster, played.fed.rnd, manifest))


def test_a_record_missing_from_a_v2_manifest_is_refused(played):
    manifest = dataclasses.replace(played.manifest, secure_aggregation=None)
    _refused("secagg_record", lambda: check_record(played.fed.roster, played.fed.rnd, manifest))


def test_a_substituted_aggregate_is_refused_by_the_recompute(played, tmp_path):
    fed = played.fed
    # The operator publishes the survivors' sum without removing the dropped bank's masks.
    only_self = portal_correction(fed, played.reveals, SURVIVORS, ())
    wrong = portal_sum(fed, played.public, played.uploads, only_self, tmp_path / "wrong.ckks2")
    manifest = dataclasses.replace(played.manifest, aggregate_digest=wrong)
    check_record(fed.roster, fed.rnd, manifest)  # the record itself is genuine
    out = tmp_path / "recomputed.ckks2"
    error = _refused(
        "aggregate_substituted",
        lambda: recompute_aggregate(
            played.secret, fed.roster, fed.rnd, manifest, played.uploads, out
        ),
    )
    assert "not the sum" in error.message


def test_a_survivors_signed_but_wrong_share_is_caught_by_the_seed_commitment(played, tmp_path):
    fed = played.fed
    alpha = played.reveals[0]
    wrong = {**alpha.seed_shares, "beta": played.reveals[1].seed_shares["gamma"]}
    unsigned = dataclasses.replace(alpha, seed_shares=wrong, signature="")
    message = unsigned.message(fed.roster.consortium_id, 7)
    lying = dataclasses.replace(unsigned, signature=sign(fed.ceremony["alpha"].key, message))
    manifest = _with_record(played.manifest, reveals=(lying, *played.reveals[1:]))
    check_record(fed.roster, fed.rnd, manifest)  # alpha did sign it
    out = tmp_path / "recomputed.ckks2"
    error = _refused(
        "secagg_record",
        lambda: recompute_aggregate(
            played.secret, fed.roster, fed.rnd, manifest, played.uploads, out
        ),
    )
    assert "'beta''s self-mask seed" in error.message


# --- secrets on disk, and who checks -----------------------------------------------------


def test_round_secrets_persist_across_a_restart_in_a_0600_file(played):
    fed, home = played.fed, played.fed.homes["gamma"]
    path = round_path(home, 7)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    before = round_file(home, 7)
    again = mask_keys_post(fed.roster, fed.rnd, fed.me("gamma"), home)
    assert again == fed.posts["gamma"]
    assert round_file(home, 7).mask_key == before.mask_key
    assert before.reveal is not None and before.cohort_keys is not None


def test_a_damaged_round_file_is_refused_rather_than_replaced_by_new_secrets(tmp_path):
    path = round_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    _refused("secagg_state", lambda: round_file(tmp_path, 3))
    assert path.read_text() == "{not json"


@pytest.mark.parametrize(
    ("checkers", "draw", "chosen"),
    [(0, 99, True), (1, 0, True), (1, 1, False), (2, 1, True), (2, 2, False)],
)
def test_every_node_recomputes_at_zero_checkers_and_one_in_inputs_per_checker(
    checkers, draw, chosen
):
    policy = PolicySnapshot.from_dict(policy_dict(aggregate_checkers=checkers))
    assert aggregate_chosen(policy, 4, lambda n: draw) is chosen
