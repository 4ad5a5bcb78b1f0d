"""Property: no single-byte change to a signed version's canonical body survives verification."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from roster_helpers import Ceremony, found, new_bank, signed

from governance import AdmitBank, RosterError, RosterVersion, apply, verify_chain
from governance.encoding import strict_json_loads

CEREMONY: Ceremony = found()
EPSILON = new_bank("epsilon")
SIGNED: RosterVersion = signed(
    CEREMONY.propose(AdmitBank(EPSILON.member())),
    EPSILON,
    CEREMONY["alpha"],
    CEREMONY["beta"],
    CEREMONY["gamma"],
)
BODY = SIGNED.canonical()


def test_the_unchanged_version_verifies() -> None:
    # Without this the property below would pass for a chain that never verifies at all.
    assert verify_chain(CEREMONY.genesis, [SIGNED]).version == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(BODY) - 1), byte=st.integers(0, 255))
def test_any_single_byte_change_to_the_signed_body_is_refused(position: int, byte: int) -> None:
    if BODY[position] == byte:
        byte = (byte + 1) % 256
    tampered = BODY[:position] + bytes([byte]) + BODY[position + 1 :]

    try:
        data = strict_json_loads(tampered)
        if not isinstance(data, dict):
            raise RosterError("not an object")
        version = RosterVersion.from_dict({**data, "signatures": dict(SIGNED.signatures)})
        apply(CEREMONY.state, version)
    except RosterError:
        return
    raise AssertionError(f"byte {position} -> {byte!r} verified: {json.dumps(data)[:200]}")
