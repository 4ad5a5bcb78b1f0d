"""What the secure-aggregation API tests share: real bank keys, their posts, and snapshots.

Every message is built the way a node builds it (``protocol.secagg``, ``he.recovery``,
``he.sharebox``), signed with the bank's real roster Ed25519 key and sealed to its peers'
real roster X25519 keys.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.test import Client

from audit.models import AuditEvent
from consortium.rounds.models import MaskKey, Round, ShareReveal
from he.masking import RoundBinding, public_bytes
from he.recovery import RoundSecrets, deal_shares, key_share, seed_commitment, seed_share
from he.sharebox import seal_share
from he.signing import sign
from protocol import Reveal, mask_keys_message
from tests.governance.portal_helpers import Founder

CONSORTIUM = "acme"  # the charter's consortium_id (tests/governance/portal_helpers.py)
BANKS = ("alpha", "beta", "gamma", "delta")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Dealer:
    """One bank's round secrets as only its node holds them, and the payloads it dealt."""

    founder: Founder
    mask: X25519PrivateKey
    seed: bytes
    payloads: dict[str, bytes]  # holder -> (key share, seed share) payload

    @property
    def slug(self) -> str:
        return self.founder.slug

    @property
    def mask_public_key(self) -> str:
        return b64(public_bytes(self.mask))


def deal(founder: Founder, cohort: list[str], threshold: int) -> Dealer:
    mask, seed = X25519PrivateKey.generate(), os.urandom(32)
    payloads = deal_shares(RoundSecrets(mask, seed), sorted(cohort), threshold)
    return Dealer(founder, mask, seed, payloads)


def binding_of(rnd: Round, number: int | None = None) -> RoundBinding:
    return RoundBinding(
        CONSORTIUM, rnd.number if number is None else number, rnd.key_epoch.fingerprint
    )


def mask_keys_body(
    dealer: Dealer,
    banks: dict[str, Founder],
    binding: RoundBinding,
    *,
    recipients: list[str] | None = None,
) -> dict[str, Any]:
    """The ``MaskKeysPost`` a node sends: signed, one sealed box per other cohort bank."""
    commitment = seed_commitment(dealer.seed, binding, dealer.slug)
    message = mask_keys_message(
        binding.consortium, binding.round, dealer.slug, dealer.mask_public_key, commitment
    )
    peers = (
        recipients if recipients is not None else [b for b in dealer.payloads if b != dealer.slug]
    )
    return {
        "mask_public_key": dealer.mask_public_key,
        "seed_commitment": commitment,
        "signature": sign(dealer.founder.keys.key, message),
        "shares": {peer: _sealed(dealer, banks[peer], binding) for peer in peers},
    }


def _sealed(dealer: Dealer, peer: Founder, binding: RoundBinding) -> str:
    payload = dealer.payloads.get(peer.slug, bytes(68))
    agreement = dealer.founder.keys.agreement
    return b64(
        seal_share(
            agreement, dealer.slug, peer.keys.agreement.public_key(), peer.slug, payload, binding
        )
    )


def reveal_body(
    dealers: dict[str, Dealer],
    bank: str,
    number: int,
    *,
    survivors: list[str],
    dropped: list[str],
    key_shares_of: list[str] | None = None,
    seed_shares_of: list[str] | None = None,
) -> dict[str, Any]:
    """A survivor's signed ``Reveal``: key shares of the dropped, seed shares of the survivors."""
    reveal = Reveal(
        bank=bank,
        survivors=tuple(survivors),
        dropped=tuple(dropped),
        key_shares={
            d: b64(key_share(dealers[d].payloads[bank]).to_bytes())
            for d in (dropped if key_shares_of is None else key_shares_of)
        },
        seed_shares={
            s: b64(seed_share(dealers[s].payloads[bank]).to_bytes())
            for s in (survivors if seed_shares_of is None else seed_shares_of)
        },
    )
    signature = sign(dealers[bank].founder.keys.key, reveal.message(CONSORTIUM, number))
    return dataclasses.replace(reveal, signature=signature).to_dict()


def put_keys(client: Client, number: int, founder: Founder, body: Any) -> Any:
    return client.put(
        f"/api/v1/rounds/{number}/mask-keys",
        data=json.dumps(body),
        content_type="application/json",
        **founder.auth(),
    )


def post_reveal(client: Client, number: int, founder: Founder, body: Any) -> Any:
    return client.post(
        f"/api/v1/rounds/{number}/reveal",
        data=json.dumps(body),
        content_type="application/json",
        **founder.auth(),
    )


def stored(rnd: Round) -> dict[str, Any]:
    """Everything a refused message must leave as it was: the round, its keys and reveals."""
    fresh = Round.objects.get(pk=rnd.pk)
    return {
        "round": (fresh.state, fresh.cohort, fresh.survivors, fresh.dropped),
        "mask_keys": list(
            MaskKey.objects.filter(round=rnd)
            .order_by("bank__slug")
            .values("bank__slug", "mask_public_key", "seed_commitment", "signature", "shares")
        ),
        "reveals": list(
            ShareReveal.objects.filter(round=rnd)
            .order_by("bank__slug")
            .values("bank__slug", "body")
        ),
        "accepted": AuditEvent.objects.filter(action__endswith=".accepted").count(),
    }


def refused_event(kind: str) -> AuditEvent | None:
    return AuditEvent.objects.filter(action=f"{kind}.refused").order_by("-seq").first()


def assert_refused(
    response: Any, status: int, fragment: str, rnd: Round, before: dict[str, Any]
) -> None:
    """The status, a message naming the problem, and nothing stored changed."""
    assert response.status_code == status, response.content
    assert fragment in response.json()["message"], response.json()
    assert stored(rnd) == before
