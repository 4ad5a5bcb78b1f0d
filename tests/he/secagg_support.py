"""Helpers shared by the secure-aggregation tests: a cohort of banks and its uploads."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from he.masking import MaskTerm, RoundBinding, pairwise_terms
from he.recovery import RoundSecrets
from he.ring import SealKit
from he.seeded import Masker, decrypt_vector2, encrypt_vector2, masker_for, sum_vectors2


@dataclass
class Cohort:
    """Banks ``bank-00`` .. ``bank-NN`` with their round secrets, as the roster would list them."""

    secrets: dict[str, RoundSecrets]
    binding: RoundBinding

    @classmethod
    def of(cls, size: int, binding: RoundBinding, seed: int = 0) -> Cohort:
        rng = np.random.default_rng(seed)
        secrets = {
            f"bank-{i:02d}": RoundSecrets(
                X25519PrivateKey.from_private_bytes(rng.bytes(32)), rng.bytes(32)
            )
            for i in range(size)
        }
        return cls(secrets, binding)

    @property
    def ids(self) -> list[str]:
        return sorted(self.secrets)

    def publics(self, among: list[str] | None = None) -> dict[str, X25519PublicKey]:
        return {b: self.secrets[b].agreement.public_key() for b in (among or self.ids)}

    def terms(self, bank: str, *, self_mask: bool = False) -> list[MaskTerm]:
        own = self.secrets[bank]
        terms = pairwise_terms(own.agreement, bank, self.publics(), self.binding)
        return [*terms, own.self_term(bank)] if self_mask else terms


def upload(kit: SealKit, values: np.ndarray, terms: list[MaskTerm], cohort: Cohort) -> bytes:
    out = io.BytesIO()
    encrypt_vector2(kit, values, cohort.binding.epoch, out, masker_for(kit, terms, cohort.binding))
    return out.getvalue()


def write_all(blobs: list[bytes], folder: Path) -> list[Path]:
    paths = []
    for index, blob in enumerate(blobs):
        path = folder / f"upload-{index:03d}.ckks2"
        path.write_bytes(blob)
        paths.append(path)
    return paths


def decrypted_sum(
    secret: SealKit, public: SealKit, paths: list[Path], correction: Masker | None = None
) -> np.ndarray:
    """What the portal sums (with the kit of the public context), decrypted by a member."""
    out = io.BytesIO()
    sum_vectors2(paths, public, out, correction)
    return decrypt_vector2(secret, io.BytesIO(out.getvalue()))


def ring_masks(banks: int, binding: RoundBinding) -> tuple[list[list[MaskTerm]], list[MaskTerm]]:
    """Each bank's terms (pairwise with its ring neighbours, and a self-mask), and the
    correction that removes the self-masks: the pairwise ones cancel in the sum."""
    rng = np.random.default_rng(banks)
    pair = [rng.bytes(32) for _ in range(banks)]
    own = [rng.bytes(32) for _ in range(banks)]
    terms = [
        [
            MaskTerm(f"b{(i + 1) % banks}", pair[i], 1),
            MaskTerm(f"b{(i - 1) % banks}", pair[(i - 1) % banks], -1),
            MaskTerm(f"b{i}", own[i], 1),
        ]
        for i in range(banks)
    ]
    return terms, [MaskTerm(f"b{i}", own[i], -1) for i in range(banks)]


def masked_sum(
    kits: tuple[SealKit, SealKit], fingerprint: str, packed: list[np.ndarray], folder: Path
) -> np.ndarray:
    """Encrypt each vector masked (v2, seeded), sum as the portal does, unmask and decrypt."""
    secret, public = kits
    binding = RoundBinding("consortium-test", 3, fingerprint)
    terms, correction = ring_masks(len(packed), binding)
    blobs = []
    for values, own in zip(packed, terms, strict=True):
        out = io.BytesIO()
        encrypt_vector2(secret, values, fingerprint, out, masker_for(secret, own, binding))
        blobs.append(out.getvalue())
    paths = write_all(blobs, folder)
    return decrypted_sum(secret, public, paths, masker_for(public, correction, binding))


def coefficients_from_slots(slots: np.ndarray, kit: SealKit) -> np.ndarray:
    """Invert CKKS's canonical embedding: the centred plaintext coefficients of decoded slots.

    SEAL orders slot ``j`` at the root ``zeta^(3^j mod 2N)``; the other half of the odd
    roots carry the conjugates. Checked in tests: an encoded vector comes back as integers.
    """
    n = kit.params.poly_modulus_degree
    exponents = np.array([pow(3, j, 2 * n) for j in range(n // 2)])
    spectrum = np.zeros(2 * n, dtype=complex)
    spectrum[exponents] = slots
    spectrum[2 * n - exponents] = np.conj(slots)
    return (np.fft.fft(spectrum)[:n] / n).real * kit.scale
