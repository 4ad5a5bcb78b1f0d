"""The portal's own Ed25519 key, which signs checkpoints and exported reports."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from he.errors import HEError
from he.signing import private_key_bytes, private_key_load, public_key_b64, signing_key_new


def _generate(path: Path) -> None:
    """Write a new key to ``path`` (0600) unless a concurrent process got there first."""
    # mkstemp makes the file 0600 from the start; the directory holds it, so 0700.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".portal-key-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_bytes(signing_key_new()))
        os.chmod(tmp, 0o600)
        # link() never replaces an existing file: of two processes starting at once,
        # exactly one key wins and both read the same one afterwards.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def portal_signing_key() -> Ed25519PrivateKey:
    """Load the key from ``settings.PORTAL_SIGNING_KEY_FILE``.

    The embedded default creates it on first use. A path given explicitly must exist:
    a missing Secret mount must not silently become a fresh, unknown key.
    """
    path = Path(settings.PORTAL_SIGNING_KEY_FILE)
    if not path.exists():
        if not getattr(settings, "PORTAL_SIGNING_KEY_GENERATE", False):
            raise ImproperlyConfigured(
                f"CONSORTIUM_PORTAL_SIGNING_KEY_FILE={path} does not exist; mount the portal's "
                "Ed25519 key there (PEM, PKCS#8)"
            )
        _generate(path)
    try:
        return private_key_load(path.read_bytes())
    except (OSError, HEError) as exc:
        raise ImproperlyConfigured(f"portal signing key {path}: {exc}") from exc


def portal_public_key() -> str:
    """The portal's public key, base64 of the raw 32 bytes (the ``portal.pub`` format)."""
    return public_key_b64(portal_signing_key())
