"""Worker processes that mask and encrypt a v2 upload: the same container, sums and refusals."""

from __future__ import annotations

import hashlib
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bank_node.encrypt_pool import (
    POOL_MIN_VALUES,
    EncryptPool,
    PoolFailed,
    default_deadline,
    start_pool,
    worker_secret,
)
from bank_node.encrypt_worker import WorkerTask, split_blocks
from he.errors import HEError
from he.keys import load_public_context
from he.masking import RoundBinding
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal
from he.seeded import encrypt_vector2, masker_for
from he.wire import HashingReader
from he.wire2 import read_header2
from tests.he.secagg_support import decrypted_sum, ring_masks, write_all

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
N = PARAMS.poly_modulus_degree
ROOT = Path(__file__).resolve().parents[2]
LENGTH = 3 * N + 5  # four chunks, the last one partly filled: two blocks of two


@pytest.fixture(scope="module")
def kits(ckks) -> tuple[SealKit, SealKit]:
    public = load_public_context(ckks.public_bytes, PARAMS)
    return kit_from_tenseal(ckks.secret, PARAMS), kit_from_tenseal(public, PARAMS)


@pytest.fixture(scope="module")
def binding(ckks) -> RoundBinding:
    return RoundBinding("consortium-test", 7, ckks.fingerprint)


def _pool(ckks, binding: RoundBinding, terms, length: int = LENGTH, workers: int = 2, **options):
    secret = worker_secret(ckks.secret)
    return EncryptPool(7, PARAMS, secret, terms, binding, length, workers, **options)


def test_a_pooled_upload_sums_with_in_process_ones_to_the_plain_sum(
    ckks, kits, binding, tmp_path: Path
):
    secret, public = kits
    terms, correction = ring_masks(3, binding)
    rng = np.random.default_rng(3)
    values = [rng.normal(0, 0.1, LENGTH) for _ in range(3)]
    blobs = []
    for bank, (vector, own) in enumerate(zip(values, terms, strict=True)):
        out = io.BytesIO()
        if bank == 0:
            _pool(ckks, binding, own).encrypt(vector, ckks.fingerprint, out)
        else:
            encrypt_vector2(secret, vector, ckks.fingerprint, out, masker_for(secret, own, binding))
        blobs.append(out.getvalue())
    paths = write_all(blobs, tmp_path)
    total = decrypted_sum(secret, public, paths, masker_for(public, correction, binding))
    # CKKS noise at scale 2^28 is about 1e-6 a value; a block masked wrong is off by > 1e6.
    assert np.max(np.abs(total - sum(values))) < 1e-4


def test_the_pooled_container_is_the_in_process_one_in_header_size_and_digest(ckks, kits, binding):
    secret, _ = kits
    terms, _ = ring_masks(2, binding)
    values = np.random.default_rng(4).normal(size=LENGTH)
    pooled, inline = io.BytesIO(), io.BytesIO()
    pool = _pool(ckks, binding, terms[0])
    digest = pool.encrypt(values, ckks.fingerprint, pooled)
    encrypt_vector2(secret, values, ckks.fingerprint, inline, masker_for(secret, terms[0], binding))
    assert len(pooled.getvalue()) == len(inline.getvalue())
    headers = [read_header2(HashingReader(io.BytesIO(b.getvalue()))) for b in (pooled, inline)]
    assert headers[0] == headers[1] and headers[0].seeded
    assert digest == hashlib.sha256(pooled.getvalue()).hexdigest()
    assert len(pool.worker_cpu) == 2 and all(cpu > 0 for cpu in pool.worker_cpu)


@pytest.mark.parametrize(("length", "workers"), [(1, 2), (N, 1), (5 * N, 2), (7 * N + 1, 3)])
def test_the_blocks_cover_every_chunk_once_and_none_is_empty(length: int, workers: int):
    blocks = split_blocks(PARAMS, length, workers)
    covered = [chunk for first, stop in blocks for chunk in range(first, stop)]
    assert covered == list(range(-(-length // N)))
    assert all(stop > first for first, stop in blocks)


def test_a_task_crosses_the_pipe_unchanged(binding):
    terms, _ = ring_masks(3, binding)
    task = WorkerTask(PARAMS, binding, tuple(terms[1]), LENGTH, 2, 4)
    assert WorkerTask.from_bytes(task.to_bytes()) == task
    assert task.value_span() == slice(2 * N, LENGTH)


def test_a_small_update_or_no_workers_starts_no_pool(binding):
    def never() -> bytes:
        raise AssertionError("the secret was serialised for no pool")

    assert start_pool(1, PARAMS, never, [], binding, POOL_MIN_VALUES - 1, 2) is None
    assert start_pool(1, PARAMS, never, [], binding, POOL_MIN_VALUES, 0) is None


def test_a_dead_worker_is_a_pool_failure_not_a_hang(ckks, binding):
    terms, _ = ring_masks(2, binding)
    pool = _pool(ckks, binding, terms[0])
    pool._workers[1].process.kill()
    with pytest.raises(PoolFailed, match="worker"):
        pool.encrypt(np.zeros(LENGTH), ckks.fingerprint, io.BytesIO())
    assert pool._workers == []  # every worker was stopped


def test_a_worker_that_stops_answering_is_stopped_at_the_deadline_not_waited_for(ckks, binding):
    terms, _ = ring_masks(2, binding)
    pool = _pool(ckks, binding, terms[0], deadline=3.0)
    pool.wait_ready()
    stalled = pool._workers[1].process
    stalled.send_signal(signal.SIGSTOP)  # alive, holding its pipe, answering nothing
    started = time.monotonic()
    with pytest.raises(PoolFailed, match="did not finish within 3 s"):
        pool.encrypt(np.zeros(LENGTH), ckks.fingerprint, io.BytesIO())
    assert time.monotonic() - started < 30
    assert stalled.wait(timeout=10) == -signal.SIGKILL


def test_the_deadline_grows_with_the_update():
    assert default_deadline(4_000_000) > default_deadline(1_000_000) >= 60


def test_nan_is_refused_before_any_worker_sees_the_update(ckks, binding):
    terms, _ = ring_masks(2, binding)
    values = np.zeros(LENGTH)
    values[5] = np.nan
    with pytest.raises(HEError, match="NaN"):
        _pool(ckks, binding, terms[0]).encrypt(values, ckks.fingerprint, io.BytesIO())


def test_an_update_of_another_length_is_a_pool_failure(ckks, binding):
    terms, _ = ring_masks(2, binding)
    with pytest.raises(PoolFailed, match=f"expect {LENGTH} values"):
        _pool(ckks, binding, terms[0]).encrypt(np.zeros(N), ckks.fingerprint, io.BytesIO())


def test_a_public_context_is_refused_for_the_workers(ckks):
    public = load_public_context(ckks.public_bytes, PARAMS)
    with pytest.raises(PoolFailed, match="secret context"):
        worker_secret(public)


def test_the_worker_imports_neither_torch_nor_the_agent():
    probe = (
        "import sys, bank_node.encrypt_worker; "
        "print(sorted(m for m in ('torch', 'django', 'bank_node.agent') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


def test_a_worker_whose_node_goes_away_exits_quietly():
    done = subprocess.run(
        [sys.executable, "-m", "bank_node.encrypt_worker"],
        input=b"",
        capture_output=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 1 and done.stderr == b""
