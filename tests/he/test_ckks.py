"""The pure crypto package: packing, validation, streaming sum, key separation."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from he.aggregate import sum_vectors
from he.codec import (
    check_headroom,
    decrypt_vector,
    encrypt_to_file,
    encrypt_vector,
    pack_update,
    unpack_aggregate,
)
from he.errors import HEError, SecretKeyPresent, UpdateInvalid
from he.keys import (
    fingerprint,
    generate_secret_context,
    load_public_context,
    load_secret_context,
    public_context_bytes,
    secret_context_bytes,
)
from he.params import CkksParams
from he.validate import validate_vector

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()


@pytest.fixture(scope="module")
def secret_ctx() -> ts.Context:
    return generate_secret_context(PARAMS)


@pytest.fixture(scope="module")
def public_bytes(secret_ctx: ts.Context) -> bytes:
    return public_context_bytes(secret_ctx)


@pytest.fixture(scope="module")
def public_ctx(public_bytes: bytes) -> ts.Context:
    return load_public_context(public_bytes, PARAMS)


def _encrypt(ctx: ts.Context, values: np.ndarray, fp: str) -> bytes:
    buf = io.BytesIO()
    encrypt_vector(ctx, values, PARAMS, fp, buf)
    return buf.getvalue()


def _validate(public_ctx: ts.Context, blob: bytes, fp: str, length: int) -> None:
    validate_vector(io.BytesIO(blob), public_ctx, PARAMS, fingerprint=fp, expected_length=length)


def test_the_decrypted_sum_equals_weighted_fedavg_within_1e_6(secret_ctx, public_ctx, public_bytes):
    fp = fingerprint(public_bytes)
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.5, 5000) for _ in range(4)]
    counts = [120, 3400, 800, 51]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (w, n) in enumerate(zip(weights, counts, strict=True)):
            path = Path(tmp) / f"{i}.ckks"
            encrypt_to_file(secret_ctx, pack_update(w, n, 1.0 + i / 8), PARAMS, fp, path)
            paths.append(path)
        out = io.BytesIO()
        sum_vectors(paths, public_ctx, PARAMS, out)
    avg, total = unpack_aggregate(decrypt_vector(secret_ctx, io.BytesIO(out.getvalue()), PARAMS))
    expected = sum(w * n for w, n in zip(weights, counts, strict=True)) / sum(counts)
    assert total == sum(counts)
    assert np.max(np.abs(avg - expected)) < 1e-6


def test_the_public_context_cannot_decrypt_and_the_portal_loader_refuses_a_secret_one(
    secret_ctx, public_ctx
):
    assert not public_ctx.is_private()
    with pytest.raises(SecretKeyPresent):
        load_public_context(secret_context_bytes(secret_ctx))
    with pytest.raises(HEError):
        load_secret_context(public_context_bytes(secret_ctx))


def test_the_fingerprint_is_stable_across_serialisations(secret_ctx, public_bytes):
    assert fingerprint(public_context_bytes(secret_ctx)) == fingerprint(public_bytes)


def test_a_valid_update_passes_and_reports_the_digest_of_its_bytes(
    secret_ctx, public_ctx, public_bytes
):
    import hashlib

    fp = fingerprint(public_bytes)
    blob = _encrypt(secret_ctx, np.arange(3000, dtype=float), fp)
    result = validate_vector(
        io.BytesIO(blob), public_ctx, PARAMS, fingerprint=fp, expected_length=3000
    )
    assert result.digest == hashlib.sha256(blob).hexdigest()
    assert result.chunks == 2


def _other_params_blob() -> bytes:
    other = CkksParams(8192, (60, 40, 60), 28)
    ctx = generate_secret_context(other)
    return _encrypt(ctx, np.ones(100), "x")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"", "truncated"),
        (lambda b: b"\x00" * 200, "CKKSVEC1"),
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"extra", "unexpected bytes"),
        (lambda b: np.random.default_rng(1).bytes(len(b)), "CKKSVEC1"),
    ],
    ids=["empty", "zeros", "half", "one-byte-short", "trailing", "random"],
)
def test_malformed_bodies_are_refused_with_a_reason(
    secret_ctx, public_ctx, public_bytes, mutate, message
):
    fp = fingerprint(public_bytes)
    blob = _encrypt(secret_ctx, np.ones(100), fp)
    with pytest.raises(UpdateInvalid, match=message):
        _validate(public_ctx, mutate(blob), fp, 100)


def test_a_vector_of_the_wrong_length_is_refused(secret_ctx, public_ctx, public_bytes):
    fp = fingerprint(public_bytes)
    with pytest.raises(UpdateInvalid, match="needs 100"):
        _validate(public_ctx, _encrypt(secret_ctx, np.ones(99), fp), fp, 100)


def test_a_vector_under_another_key_epoch_is_refused(secret_ctx, public_ctx):
    with pytest.raises(UpdateInvalid, match="key epoch"):
        _validate(public_ctx, _encrypt(secret_ctx, np.ones(100), "f" * 64), "a" * 64, 100)


def test_a_ciphertext_made_with_other_parameters_is_refused(public_ctx):
    blob = _other_params_blob()
    # Pretend the header is right; the ciphertexts themselves must still be refused.
    from he.wire import HashingReader, read_header

    header = read_header(HashingReader(io.BytesIO(blob)))
    forged = _reheader(blob, header.length, "x")
    with pytest.raises(UpdateInvalid):
        _validate(public_ctx, forged, "x", 100)


def _reheader(blob: bytes, length: int, fp: str) -> bytes:
    from he.wire import HashingReader, Header, read_header

    reader = HashingReader(io.BytesIO(blob))
    read_header(reader)
    rest = blob[reader.bytes_read :]
    return Header(fp, length, PARAMS.chunks_for(length), PARAMS.slots).to_bytes() + rest


def test_a_chunk_at_another_scale_is_refused(public_ctx, public_bytes):
    fp = fingerprint(public_bytes)
    ctx = generate_secret_context(PARAMS)
    ctx.global_scale = 2.0**20
    blob = _encrypt(ctx, np.ones(100), fp)
    with pytest.raises(UpdateInvalid, match="scale"):
        _validate(public_ctx, blob, fp, 100)


def test_a_flipped_bit_changes_the_digest_so_the_signature_check_catches_it(
    secret_ctx, public_ctx, public_bytes
):
    import hashlib

    fp = fingerprint(public_bytes)
    blob = bytearray(_encrypt(secret_ctx, np.ones(100), fp))
    original = hashlib.sha256(blob).hexdigest()
    blob[len(blob) // 2] ^= 0x01
    try:
        result = validate_vector(
            io.BytesIO(bytes(blob)), public_ctx, PARAMS, fingerprint=fp, expected_length=100
        )
    except UpdateInvalid:
        return  # refused structurally: also fine
    assert result.digest != original


def test_headroom_check_refuses_values_that_could_overflow_the_sum():
    check_headroom(np.array([1e5]), PARAMS, 256)
    with pytest.raises(HEError, match="overflow"):
        check_headroom(np.array([PARAMS.max_plain_magnitude]), PARAMS, 256)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"poly_modulus_degree": 3000}, "one of"),
        ({"coeff_mod_bit_sizes": (60, 60)}, "128-bit security"),
        ({"coeff_mod_bit_sizes": (60,)}, "two primes"),
        ({"global_scale_bits": 60}, "below the first prime"),
    ],
)
def test_insecure_or_malformed_parameters_are_refused(kwargs, message):
    with pytest.raises(HEError, match=message):
        CkksParams(**kwargs)


def test_default_wire_size_is_at_most_8_5_times_float32(secret_ctx, public_bytes):
    values = np.zeros(PARAMS.slots * 4)
    blob = _encrypt(secret_ctx, values, fingerprint(public_bytes))
    assert len(blob) / (values.size * 4) <= 8.5
