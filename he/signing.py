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
    """True when ``signature_b64`` is a valid signature of ``message``; never raises."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        public.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
