"""The key ceremony and the rules for which context may live where.

Members share one *secret* context (it decrypts); the portal holds only the *public*
context (it encrypts and adds, never decrypts). These helpers make the two impossible to
confuse: loading a public context that carries a secret key is an error.
"""

from __future__ import annotations

import hashlib

import numpy as np
import tenseal as ts

from he.errors import HEError, SecretKeyPresent
from he.params import CkksParams


def generate_secret_context(params: CkksParams) -> ts.Context:
    """Run the key ceremony: a fresh context holding secret and public keys."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    ctx.global_scale = float(2**params.global_scale_bits)
    return ctx


def secret_context_bytes(ctx: ts.Context) -> bytes:
    """Serialize a secret context for the members' key file."""
    if not ctx.is_private():
        raise HEError("this context has no secret key; it cannot decrypt")
    return bytes(ctx.serialize(save_secret_key=True))


def public_context_bytes(ctx: ts.Context) -> bytes:
    """Serialize the public half of ``ctx``: parameters, public and evaluation keys only.

    Relinearisation and Galois keys are left out: the portal only adds, and SEAL writes
    those keys with fresh randomness on every save, which would make the bytes (and so the
    fingerprint) differ between two serialisations of one key set. Without them the
    result is deterministic, so its SHA-256 is a stable fingerprint for the key epoch.
    """
    public = ctx.copy()
    if public.is_private():
        public.make_context_public()
    return bytes(
        public.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
    )


def fingerprint(public_bytes: bytes) -> str:
    """The key epoch's fingerprint: SHA-256 over the public context's bytes."""
    return hashlib.sha256(public_bytes).hexdigest()


def load_public_context(data: bytes, params: CkksParams | None = None) -> ts.Context:
    """Load a context the portal may hold, refusing one that carries a secret key.

    When ``params`` is given the context is also checked against them.
    """
    ctx = _load(data, "public context")
    if ctx.is_private() or ctx.has_secret_key():
        raise SecretKeyPresent(
            "this context carries a secret key; the portal accepts only the public context "
            "(use the .pub file that `bank-node keygen` wrote)"
        )
    if params is not None:
        check_context_params(ctx, params)
    return ctx


def load_secret_context(data: bytes) -> ts.Context:
    """Load the members' secret context (bank node only)."""
    ctx = _load(data, "secret context")
    if not ctx.is_private():
        raise HEError("this context has no secret key; a bank node needs the secret context")
    return ctx


def check_context_params(ctx: ts.Context, params: CkksParams) -> None:
    """Raise HEError unless ``ctx`` was made with ``params``.

    TenSEAL does not expose a context's parameters, so we probe: the scale must match, a
    full vector of ``slots`` values must encrypt, and its ciphertext must be in the size
    window the parameters imply.
    """
    if ctx.global_scale != float(2**params.global_scale_bits):
        raise HEError(
            f"context scale is 2^{np.log2(ctx.global_scale):.0f}, "
            f"parameters say 2^{params.global_scale_bits}"
        )
    try:
        probe = ts.ckks_vector(ctx, np.zeros(params.slots)).serialize()
    except (ValueError, RuntimeError) as exc:
        raise HEError(f"context cannot hold {params.slots} slots: {exc}") from exc
    if not params.min_chunk_bytes <= len(probe) <= params.max_chunk_bytes:
        raise HEError("context's ciphertext size does not match its declared parameters")


def _load(data: bytes, what: str) -> ts.Context:
    if not data:
        raise HEError(f"the {what} is empty")
    try:
        return ts.context_from(data)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise HEError(f"the {what} could not be parsed: {exc}") from exc
