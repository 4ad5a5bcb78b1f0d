"""Masks precomputed while a node trains: the same words, the same uploads, the same sums."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tenseal.sealapi as seal

from he import seeded
from he.codec import pack_update
from he.errors import HEError
from he.keys import load_public_context
from he.masking import MaskTerm, RoundBinding, add_mod, combined_mask
from he.params import CkksParams
from he.premask import precompute_masks
from he.ring import SealKit, add_to_first_polynomial, kit_from_tenseal, plaintext_words, save_bytes
from he.seeded import decrypt_plaintext, encode_chunk, encrypt_vector2, masker_for
from tests.he.secagg_support import Cohort, decrypted_sum, write_all

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
N = PARAMS.poly_modulus_degree


@pytest.fixture(scope="module")
def kits(ckks) -> tuple[SealKit, SealKit]:
    public = load_public_context(ckks.public_bytes, PARAMS)
    return kit_from_tenseal(ckks.secret, PARAMS), kit_from_tenseal(public, PARAMS)


@pytest.fixture(scope="module")
def binding(ckks) -> RoundBinding:
    return RoundBinding("consortium-test", 9, ckks.fingerprint)


def _terms(count: int) -> list[MaskTerm]:
    rng = np.random.default_rng(count)
    return [MaskTerm(f"b{i}", rng.bytes(32), 1 if i % 3 else -1) for i in range(count)]


# 20 terms cross the accumulator's reduction after 14; 3 chunks end in a partial one.
@pytest.mark.parametrize("terms", [1, 2, 20])
def test_precomputed_masks_are_the_inline_masks_word_for_word(kits, binding, terms: int):
    secret, _ = kits
    masks = precompute_masks(secret, _terms(terms), binding, 2 * N + 5)
    assert masks.chunks == 3 and masks.length == 2 * N + 5
    for chunk in range(3):
        inline = combined_mask(_terms(terms), binding, chunk, secret.moduli, N)
        ahead = masks(chunk)
        assert ahead is not None and np.array_equal(ahead, inline)


def test_without_terms_nothing_is_masked_as_with_masker_for(kits, binding):
    secret, _ = kits
    masks = precompute_masks(secret, [], binding, 10)
    assert masks(0) is None and masker_for(secret, [], binding)(0) is None


def test_a_chunk_beyond_the_length_or_an_empty_length_is_refused(kits, binding):
    secret, _ = kits
    masks = precompute_masks(secret, _terms(2), binding, N)
    with pytest.raises(HEError, match="no precomputed mask for chunk 1"):
        masks(1)
    with pytest.raises(HEError, match="at least one value"):
        precompute_masks(secret, _terms(2), binding, 0)


def test_masking_the_ciphertext_decrypts_to_the_plaintext_plus_the_mask_exactly(kits, binding):
    secret, _ = kits
    assert secret.encryptor is not None
    plain = encode_chunk(secret, np.random.default_rng(1).normal(size=N))
    raw = save_bytes(secret, secret.encryptor.encrypt_symmetric(plain))
    mask = combined_mask(_terms(3), binding, 0, secret.moduli, N)
    masked = add_to_first_polynomial(secret, raw, mask)
    assert masked is not None

    def words(blob: bytes) -> np.ndarray:
        return plaintext_words(
            secret, decrypt_plaintext(secret, seeded.load_ciphertext(secret, blob))
        )

    # Decryption is linear in the first polynomial: same a and e, so no noise in between.
    assert np.array_equal(words(masked), add_mod(words(raw), mask, secret.moduli))


def test_an_unseeded_ciphertext_is_left_to_the_plaintext_route(kits, binding):
    secret, _ = kits
    assert secret.encryptor is not None
    ct = seal.Ciphertext()
    secret.encryptor.encrypt_symmetric(encode_chunk(secret, np.ones(8)), ct)
    mask = combined_mask(_terms(1), binding, 0, secret.moduli, N)
    assert add_to_first_polynomial(secret, save_bytes(secret, ct), mask) is None


def _cohort_sum(
    kits: tuple[SealKit, SealKit], binding: RoundBinding, folder: Path, *, precomputed: bool
) -> tuple[np.ndarray, np.ndarray]:
    secret, public = kits
    cohort = Cohort.of(3, binding)
    rng = np.random.default_rng(7)
    packed = [pack_update(rng.normal(0, 0.1, 2 * N + 100), 50 + i, 1.5) for i in range(3)]
    blobs = []
    for bank, values in zip(cohort.ids, packed, strict=True):
        terms = cohort.terms(bank, self_mask=True)
        masker = (
            precompute_masks(secret, terms, binding, values.size)
            if precomputed
            else masker_for(secret, terms, binding)
        )
        out = io.BytesIO()
        encrypt_vector2(secret, values, binding.epoch, out, masker)
        blobs.append(out.getvalue())
    revealed = [MaskTerm(b, cohort.secrets[b].self_seed, -1) for b in cohort.ids]
    folder.mkdir()
    paths = write_all(blobs, folder)
    total = decrypted_sum(secret, public, paths, masker_for(public, revealed, binding))
    return total, np.sum(packed, axis=0)


def test_precomputed_and_inline_masks_give_the_same_decrypted_sum(kits, binding, tmp_path):
    inline, plain = _cohort_sum(kits, binding, tmp_path / "inline", precomputed=False)
    ahead, _ = _cohort_sum(kits, binding, tmp_path / "ahead", precomputed=True)
    # Each encryption draws fresh noise, so the two sums agree to CKKS precision.
    assert _relative(ahead, inline) < 1e-6 and _relative(ahead, plain) < 1e-6
    assert _relative(inline, plain) < 1e-6


def test_when_the_ciphertext_layout_is_unexpected_the_plaintext_is_masked_instead(
    kits, binding, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(seeded, "add_to_first_polynomial", lambda *_: None)
    total, plain = _cohort_sum(kits, binding, tmp_path / "fallback", precomputed=True)
    assert _relative(total, plain) < 1e-6


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("length", [N, 7])
def test_a_chunk_encodes_its_reals_pairwise_as_complex_slots(kits, length: int):
    secret, _ = kits
    reals = np.random.default_rng(length).normal(size=length)
    padded = np.zeros(N)
    padded[:length] = reals
    expected = seal.Plaintext()
    slots = padded[0::2] + 1j * padded[1::2]
    secret.encoder.encode(slots.tolist(), secret.parms_id, secret.scale, expected)
    assert np.array_equal(
        plaintext_words(secret, encode_chunk(secret, reals)), plaintext_words(secret, expected)
    )
