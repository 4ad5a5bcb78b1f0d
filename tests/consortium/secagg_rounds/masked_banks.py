"""The banks' side of a v2 round, played with the ``he`` functions directly.

Each bank advertises a fresh mask key and a commitment to its self-mask seed (signed with
its roster key), deals Shamir shares of both to the whole cohort (sealing the others' to
their roster agreement keys, keeping its own), uploads a masked seeded ``CKKSVEC2``
container, and reveals the shares it holds once unmasking begins. Mask keys and reveals go
into the database through the ORM: their REST endpoints are another part of issue 12.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from consortium.rounds.models import MaskKey, Round, ShareReveal
from he.codec import TRAILER_SLOTS, pack_update
from he.masking import MaskTerm, RoundBinding, pairwise_terms, public_bytes
from he.recovery import RoundSecrets, deal_shares, key_share, seed_commitment, seed_share
from he.ring import SealKit
from he.seeded import encrypt_vector2, masker_for
from he.shamir import Share
from he.sharebox import open_share, seal_share
from he.signing import sign
from protocol import Reveal, mask_keys_message
from tests.conftest import upload_headers
from tests.governance.portal_helpers import Founder

CONSORTIUM = "acme"  # portal_helpers.charter's consortium id


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class MaskedBank:
    """One bank's secrets for one round."""

    founder: Founder
    secrets: RoundSecrets
    own_payload: bytes = b""
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))


class MaskedRound:
    """The cohort of a v2 round as the banks play it."""

    def __init__(self, rnd: Round, members: dict[str, Founder], kit: SealKit) -> None:
        self.rnd = rnd
        self.members = members
        self.kit = kit  # the members' secret context: encrypt and decrypt
        self.binding = RoundBinding(CONSORTIUM, rnd.number, rnd.key_epoch.fingerprint)
        self.banks: dict[str, MaskedBank] = {}

    def advertise(self, *slugs: str) -> None:
        """``slugs`` post their mask key, seed commitment and sealed share boxes."""
        for slug in slugs:
            bank = MaskedBank(
                self.members[slug], RoundSecrets(X25519PrivateKey.generate(), os.urandom(32))
            )
            payloads = deal_shares(bank.secrets, self.rnd.cohort, self.rnd.threshold or 0)
            bank.own_payload = payloads.pop(slug)
            self.banks[slug] = bank
            mask_public = b64(public_bytes(bank.secrets.agreement))
            commitment = seed_commitment(bank.secrets.self_seed, self.binding, slug)
            message = mask_keys_message(CONSORTIUM, self.rnd.number, slug, mask_public, commitment)
            MaskKey.objects.create(
                round=self.rnd,
                bank=bank.founder.persona.bank,
                mask_public_key=mask_public,
                seed_commitment=commitment,
                signature=sign(bank.founder.keys.key, message),
                shares={h: b64(self._seal(slug, h, p)) for h, p in payloads.items()},
            )

    def _seal(self, sender: str, recipient: str, payload: bytes) -> bytes:
        own = self.members[sender].keys.agreement
        peer = self.members[recipient].keys.agreement.public_key()
        return seal_share(own, sender, peer, recipient, payload, self.binding)

    def masked_upload(self, slug: str, *, seed: int) -> bytes:
        """A bank's masked, seeded container of a random ``[n*w, n, tag]`` update."""
        bank = self.banks[slug]
        rng = np.random.default_rng(seed)
        weights = rng.normal(0, 0.3, self.rnd.vector_length - TRAILER_SLOTS)
        bank.values = pack_update(weights, int(rng.integers(50, 500)), 1.5)
        peers = {
            k.bank.slug: X25519PublicKey.from_public_bytes(base64.b64decode(k.mask_public_key))
            for k in MaskKey.objects.filter(round=self.rnd).select_related("bank")
        }
        terms = pairwise_terms(bank.secrets.agreement, slug, peers, self.binding)
        terms.append(MaskTerm(slug, bank.secrets.self_seed, 1))
        out = io.BytesIO()
        fingerprint = self.binding.epoch
        encrypt_vector2(
            self.kit, bank.values, fingerprint, out, masker_for(self.kit, terms, self.binding)
        )
        return out.getvalue()

    def upload(self, client: Any, slug: str, *, seed: int, body: bytes | None = None) -> Any:
        """``PUT rounds/{n}/update`` of the bank's masked container (or ``body``)."""
        body = self.masked_upload(slug, seed=seed) if body is None else body
        persona = self.members[slug].persona
        return client.put(
            f"/api/v1/rounds/{self.rnd.number}/update",
            data=body,
            content_type="application/octet-stream",
            **upload_headers(persona, self.rnd.number, body),
        )

    def payload_from(self, dealer: str, holder: str) -> bytes:
        """The payload ``dealer`` dealt to ``holder``, as ``holder`` opens it."""
        if dealer == holder:
            return self.banks[holder].own_payload
        boxes = MaskKey.objects.get(round=self.rnd, bank__slug=dealer).shares
        own = self.members[holder].keys.agreement
        peer = self.members[dealer].keys.agreement.public_key()
        sealed = base64.b64decode(boxes[holder])
        return open_share(own, holder, peer, dealer, sealed, self.binding)

    def reveal(
        self, slug: str, *, wrong_seed_of: str | None = None, wrong_key_of: str | None = None
    ) -> Reveal:
        """``slug`` answers the unmask request; optionally with a wrong share of one secret."""
        self.rnd.refresh_from_db()
        key_shares = {
            d: b64(key_share(self.payload_from(d, slug)).to_bytes()) for d in self.rnd.dropped
        }
        seed_shares = {
            s: b64(seed_share(self.payload_from(s, slug)).to_bytes()) for s in self.rnd.survivors
        }
        if wrong_seed_of is not None:
            index = seed_share(self.payload_from(wrong_seed_of, slug)).index
            seed_shares[wrong_seed_of] = b64(Share(index, os.urandom(32)).to_bytes())
        if wrong_key_of is not None:
            index = key_share(self.payload_from(wrong_key_of, slug)).index
            key_shares[wrong_key_of] = b64(Share(index, os.urandom(32)).to_bytes())
        unsigned = Reveal(
            slug, tuple(self.rnd.survivors), tuple(self.rnd.dropped), key_shares, seed_shares
        )
        signature = sign(self.members[slug].keys.key, unsigned.message(CONSORTIUM, self.rnd.number))
        reveal = dataclasses.replace(unsigned, signature=signature)
        ShareReveal.objects.create(
            round=self.rnd, bank=self.members[slug].persona.bank, body=reveal.to_dict()
        )
        return reveal

    def expected_sum(self, survivors: list[str]) -> np.ndarray:
        return np.sum([self.banks[s].values for s in survivors], axis=0)
