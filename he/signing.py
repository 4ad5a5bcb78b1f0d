"""Ed25519 signatures binding an update to its round and bank (non-repudiation)."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from he.errors import HEError


def update_message(round_number: int, bank_slug: str, digest_hex: str) -> bytes:
    """The exact bytes a bank signs for an upload: the round binds it against replay."""
    return f"consortium-update-v1\n{round_number}\n{bank_slug}\n{digest_hex}".encode()


def update_message_v2(
    round_number: int,
    bank_slug: str,
    digest_hex: str,
    epsilon: float | None = None,
    budget_left: bool | None = None,
) -> bytes:
    """The bytes a bank signs for an upload, privacy claim included.

    The claim (cumulative epsilon, budget left) is inside the signature, so nobody between
    the bank and the auditor can change what the bank said it spent. Under a policy
    without DP the claim is absent: both fields are empty.
    """
    eps = "" if epsilon is None else repr(float(epsilon))
    left = "" if budget_left is None else ("true" if budget_left else "false")
    return (
        f"consortium-update-v2\n{round_number}\n{bank_slug}\n{digest_hex}\n{eps}\n{left}".encode()
    )


def update_signature_valid(
    public_key_b64: str,
    round_number: int,
    bank_slug: str,
    digest_hex: str,
    signature_b64: str,
    *,
    epsilon: float | None = None,
    budget_left: bool | None = None,
) -> bool:
    """True when ``signature_b64`` signs this upload; never raises.

    A v2 signature must cover exactly the given claim. The v1 message (no claim) is still
    accepted, but only when there is no claim to protect (``epsilon`` and ``budget_left``
    both None): a v1 signature never vouches for an epsilon.
    """
    v2 = update_message_v2(round_number, bank_slug, digest_hex, epsilon, budget_left)
    if verify(public_key_b64, v2, signature_b64):
        return True
    if epsilon is None and budget_left is None:
        v1 = update_message(round_number, bank_slug, digest_hex)
        return verify(public_key_b64, v1, signature_b64)
    return False


def update_signed_digest(
    public_key_b64: str, round_number: int, bank_slug: str, digest_hex: str, signature_b64: str
) -> bool:
    """True when the signature binds the digest, whatever claim it does or does not cover.

    For auditors reading history: uploads accepted before v2 carry a v1 signature next to
    an (unsigned) epsilon. New uploads with a claim are accepted only under v2.
    """
    return verify(
        public_key_b64, update_message(round_number, bank_slug, digest_hex), signature_b64
    )


def signing_key_new() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """PEM (PKCS#8, unencrypted: the file is protected by 0600 / a Kubernetes Secret)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_load(data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise HEError(f"signing key file is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise HEError("signing key is not an Ed25519 key")
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def verify(public_key_b64: str, message: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid signature of ``message``; never raises.

    Keys and signatures come from untrusted JSON too (roster versions, objections), so a
    value of the wrong type is a failed check, not an exception.
    """
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        raw = base64.b64decode(signature_b64, validate=True)
        if len(raw) != 64:
            return False
        public.verify(raw, message)
    except (InvalidSignature, ValueError, binascii.Error, TypeError):
        return False
    return True
