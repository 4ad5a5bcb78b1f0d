"""Seeded, complex-packed v2 containers: round trip, size on the wire, and the validator."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from he.codec import encrypt_vector
from he.errors import HEError, UpdateInvalid
from he.keys import generate_secret_context, load_public_context
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal
from he.seeded import decrypt_vector2, encrypt_vector2, sum_vectors2
from he.validate2 import validate_vector2
from he.wire2 import MAGIC

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
LENGTH = 9000  # three chunks, the last one partial


@pytest.fixture(scope="module")
def kits(ckks) -> tuple[SealKit, SealKit]:
    public = load_public_context(ckks.public_bytes, PARAMS)
    return kit_from_tenseal(ckks.secret, PARAMS), kit_from_tenseal(public, PARAMS)


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1, LENGTH)


@pytest.fixture(scope="module")
def blob(kits, values, ckks) -> bytes:
    out = io.BytesIO()
    encrypt_vector2(kits[0], values, ckks.fingerprint, out)
    return out.getvalue()


def _encrypt(kit: SealKit, values: np.ndarray, fp: str) -> bytes:
    out = io.BytesIO()
    encrypt_vector2(kit, values, fp, out)
    return out.getvalue()


def _sum(kit: SealKit, blobs: list[bytes], folder: Path) -> bytes:
    paths = []
    for i, data in enumerate(blobs):
        paths.append(folder / f"{i}.ckks2")
        paths[-1].write_bytes(data)
    out = io.BytesIO()
    sum_vectors2(paths, kit, out)
    return out.getvalue()


def _validate(kit: SealKit, data: bytes, fp: str, *, seeded: bool = True, length: int = LENGTH):
    return validate_vector2(
        io.BytesIO(data), kit, fingerprint=fp, expected_length=length, seeded=seeded
    )


def test_a_seeded_packed_upload_decrypts_to_its_values(kits, values, blob):
    # CKKS at scale 2^28 adds noise of a few 1e-6 to values of order 1.
    assert np.max(np.abs(decrypt_vector2(kits[0], io.BytesIO(blob)) - values)) < 2e-5


def test_an_upload_costs_at_most_8_4_and_an_aggregate_16_1_bytes_per_parameter(
    kits, ckks, tmp_path: Path
):
    full = 16 * PARAMS.poly_modulus_degree
    upload = _encrypt(kits[0], np.random.default_rng(1).normal(size=full), ckks.fingerprint)
    aggregate = _sum(kits[1], [upload, upload], tmp_path)
    assert len(upload) / full <= 8.4
    assert len(aggregate) / full <= 16.1
    _validate(kits[1], aggregate, ckks.fingerprint, seeded=False, length=full)


def test_the_validator_accepts_an_upload_and_returns_its_digest(kits, ckks, values):
    out = io.BytesIO()
    digest = encrypt_vector2(kits[0], values, ckks.fingerprint, out)
    checked = _validate(kits[1], out.getvalue(), ckks.fingerprint)
    assert (checked.digest, checked.size_bytes, checked.chunks) == (digest, len(out.getvalue()), 3)


def test_nan_and_a_public_only_context_are_refused_before_encrypting(kits, ckks):
    with pytest.raises(HEError, match="NaN"):
        _encrypt(kits[0], np.array([1.0, np.nan]), ckks.fingerprint)
    with pytest.raises(HEError, match="secret context"):
        _encrypt(kits[1], np.ones(3), ckks.fingerprint)


def _header_end(data: bytes) -> int:
    (size,) = struct.unpack(">I", data[10:14])
    return 14 + size


def _with_header(data: bytes, **changes: object) -> bytes:
    end = _header_end(data)
    header = json.loads(data[14:end])
    header.update(changes)
    body = json.dumps(header).encode()
    return data[:10] + struct.pack(">I", len(body)) + body + data[end:]


def _first_chunk(data: bytes) -> tuple[int, bytes]:
    start = _header_end(data)
    (size,) = struct.unpack(">I", data[start : start + 4])
    return start, data[start + 4 : start + 4 + size]


def _tampered(blob: bytes) -> dict[str, tuple[bytes, str]]:
    start, chunk = _first_chunk(blob)
    lying_seal = chunk[:8] + struct.pack("<Q", len(chunk) + 1) + chunk[16:]
    return {
        "empty": (b"", "truncated"),
        "truncated in the header": (blob[:20], "truncated"),
        "truncated in a chunk": (blob[: len(blob) // 2], "truncated"),
        "trailing bytes": (blob + b"\0", "after the last"),
        "bad magic": (b"CKKSVEC1" + blob[8:], "CKKSVEC2"),
        "future version": (MAGIC + b"\0\3" + blob[10:], "version 3"),
        "header too long": (blob[:10] + struct.pack(">I", 5000) + blob[14:], "outside"),
        "header not json": (
            blob[:14] + b"{" * (_header_end(blob) - 14) + blob[_header_end(blob) :],
            "JSON",
        ),
        "extra field": (_with_header(blob, extra=1), "exactly the fields"),
        "boolean length": (_with_header(blob, length=True), "integers"),
        "chunk count": (_with_header(blob, chunks=2), "chunks"),
        "huge length": (_with_header(blob, length=1 << 40, chunks=(1 << 40) // 4096), "outside"),
        "other packing": (_with_header(blob, packing="real"), "packing"),
        "short fingerprint": (_with_header(blob, fingerprint="ab"), "64 lowercase hex"),
        "unseeded": (_with_header(blob, seeded=False), "seeded"),
        "oversized chunk": (blob[:start] + struct.pack(">I", 1 << 31) + blob[start + 4 :], "limit"),
        "lying seal size": (
            blob[: start + 4] + lying_seal + blob[start + 4 + len(chunk) :],
            "declares",
        ),
        "random chunk": (
            blob[: start + 4]
            + chunk[:16]
            + bytes(len(chunk) - 16)
            + blob[start + 4 + len(chunk) :],
            "not a ciphertext",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "truncated in the header",
        "truncated in a chunk",
        "trailing bytes",
        "bad magic",
        "future version",
        "header too long",
        "header not json",
        "extra field",
        "boolean length",
        "chunk count",
        "huge length",
        "other packing",
        "short fingerprint",
        "unseeded",
        "oversized chunk",
        "lying seal size",
        "random chunk",
    ],
)
def test_the_validator_refuses_a_malformed_container_with_a_reason(kits, ckks, blob, case):
    data, reason = _tampered(blob)[case]
    with pytest.raises(UpdateInvalid, match=reason):
        _validate(kits[1], data, ckks.fingerprint)


def test_the_validator_refuses_another_epoch_length_or_seeding(kits, ckks, blob):
    with pytest.raises(UpdateInvalid, match="key epoch"):
        _validate(kits[1], blob, "0" * 64)
    with pytest.raises(UpdateInvalid, match="values"):
        _validate(kits[1], blob, ckks.fingerprint, length=LENGTH + 1)
    with pytest.raises(UpdateInvalid, match="unseeded aggregate"):
        _validate(kits[1], blob, ckks.fingerprint, seeded=False)


def test_the_validator_refuses_a_v1_container(kits, ckks):
    out = io.BytesIO()
    encrypt_vector(ckks.secret, np.ones(5), PARAMS, ckks.fingerprint, out)
    with pytest.raises(UpdateInvalid, match="CKKSVEC2"):
        _validate(kits[1], out.getvalue(), ckks.fingerprint, length=5)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (CkksParams(8192, (60, 40), 28), "reals per chunk"),
        (CkksParams(4096, (50, 50), 28), "not a ciphertext"),
    ],
    ids=["wrong degree", "wrong primes"],
)
def test_the_validator_refuses_ciphertexts_under_other_parameters(kits, ckks, params, reason):
    other = kit_from_tenseal(generate_secret_context(params), params)
    data = _encrypt(other, np.ones(LENGTH), ckks.fingerprint)
    with pytest.raises(UpdateInvalid, match=reason):
        _validate(kits[1], data, ckks.fingerprint)


def test_the_validator_refuses_a_wrong_degree_chunk_behind_a_correct_header(kits, ckks, blob):
    params = CkksParams(8192, (60, 40), 28)
    other = _encrypt(
        kit_from_tenseal(generate_secret_context(params), params), np.ones(3), ckks.fingerprint
    )
    _, foreign = _first_chunk(other)
    start, chunk = _first_chunk(blob)
    spliced = (
        blob[:start] + struct.pack(">I", len(foreign)) + foreign + blob[start + 4 + len(chunk) :]
    )
    with pytest.raises(UpdateInvalid, match="above the"):
        _validate(kits[1], spliced, ckks.fingerprint)


def test_the_validator_refuses_a_ciphertext_at_another_scale(kits, ckks, values):
    off_scale = kit_from_tenseal(ckks.secret, CkksParams(global_scale_bits=30))
    with pytest.raises(UpdateInvalid, match="scale"):
        _validate(kits[1], _encrypt(off_scale, values, ckks.fingerprint), ckks.fingerprint)


def test_the_sum_refuses_uploads_of_different_shapes(kits, ckks, blob, tmp_path: Path):
    shorter = _encrypt(kits[0], np.ones(10), ckks.fingerprint)
    with pytest.raises(UpdateInvalid, match="disagree"):
        _sum(kits[1], [blob, shorter], tmp_path)


def test_decrypting_or_summing_refuses_a_container_chunked_for_other_parameters(
    kits, blob, tmp_path
):
    rechunked = _with_header(blob, reals_per_chunk=8192, chunks=2)
    with pytest.raises(UpdateInvalid, match="reals per chunk"):
        decrypt_vector2(kits[0], io.BytesIO(rechunked))
    with pytest.raises(UpdateInvalid, match="reals per chunk"):
        _sum(kits[1], [rechunked], tmp_path)
