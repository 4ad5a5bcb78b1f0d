"""Shares sealed to their recipient: X25519 + HKDF-SHA256 + ChaCha20-Poly1305.

In SecAgg (Bonawitz et al., CCS 2017) every share travels through the server encrypted
under a key only sender and recipient can derive. The key here comes from the two banks'
X25519 agreement keys, bound to consortium, round, key epoch, sender and recipient; the
same binding is the AEAD's associated data, so the portal can neither read a share nor
redirect one to another bank, another round or another sender.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from he.errors import HEError
from he.masking import RoundBinding

_DOMAIN = b"consortium-secagg-share-v2"
_NONCE_BYTES = 12
MAX_SEALED_BYTES = 1024  # a share box holds two Shamir shares; anything larger is refused


class ShareUnreadable(HEError):
    """A sealed share could not be opened: not for this bank, or altered on the way."""


def seal_share(
    sender: X25519PrivateKey,
    sender_id: str,
    recipient: X25519PublicKey,
    recipient_id: str,
    payload: bytes,
    binding: RoundBinding,
) -> bytes:
    """Encrypt ``payload`` so that only ``recipient`` can read it: nonce || ciphertext."""
    aad = binding.info(_DOMAIN, sender_id, recipient_id)
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _aead(sender, recipient, aad).encrypt(nonce, payload, aad)


def open_share(
    recipient: X25519PrivateKey,
    recipient_id: str,
    sender: X25519PublicKey,
    sender_id: str,
    sealed: bytes,
    binding: RoundBinding,
) -> bytes:
    """Decrypt a share sealed to ``recipient_id`` by ``sender_id``; ShareUnreadable otherwise."""
    if not _NONCE_BYTES + 16 <= len(sealed) <= MAX_SEALED_BYTES:
        raise ShareUnreadable(f"a sealed share is 28..{MAX_SEALED_BYTES} bytes, got {len(sealed)}")
    aad = binding.info(_DOMAIN, sender_id, recipient_id)
    try:
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        return _aead(recipient, sender, aad).decrypt(nonce, body, aad)
    except InvalidTag:
        raise ShareUnreadable(
            f"share from {sender_id} cannot be opened by {recipient_id}: sealed to another "
            "bank, round or key, or altered in transit"
        ) from None


def _aead(own: X25519PrivateKey, peer: X25519PublicKey, info: bytes) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        own.exchange(peer)
    )
    return ChaCha20Poly1305(key)
