"""The upload signature (v2) covers the privacy claim exactly as the headers carry it."""

from __future__ import annotations

import pytest

from he.signing import (
    public_key_b64,
    sign,
    signing_key_new,
    update_message,
    update_message_v2,
    update_signature_valid,
)
from protocol import PrivacyClaim

DIGEST = "ab" * 32


@pytest.mark.parametrize("epsilon", [0.1 + 0.2, 3.0, 1e-05, 7.999999999999])
def test_a_claim_signed_by_the_node_verifies_after_travelling_as_headers(epsilon):
    key = signing_key_new()
    claim = PrivacyClaim(epsilon=epsilon, budget_left=False)
    signature = sign(key, update_message_v2(4, "alpha", DIGEST, claim.epsilon, claim.budget_left))
    headers = claim.headers()
    received = float(headers["X-Privacy-Epsilon"]), headers["X-Privacy-Budget-Left"] == "true"
    assert update_signature_valid(
        public_key_b64(key), 4, "alpha", DIGEST, signature,
        epsilon=received[0], budget_left=received[1],
    )  # fmt: skip
    assert not update_signature_valid(
        public_key_b64(key), 4, "alpha", DIGEST, signature, epsilon=epsilon / 2, budget_left=False
    )


def test_a_v1_signature_never_vouches_for_an_epsilon():
    key = signing_key_new()
    v1 = sign(key, update_message(4, "alpha", DIGEST))
    public = public_key_b64(key)
    assert update_signature_valid(public, 4, "alpha", DIGEST, v1)
    assert not update_signature_valid(public, 4, "alpha", DIGEST, v1, epsilon=1.0)
    assert not update_signature_valid(public, 5, "alpha", DIGEST, v1)
