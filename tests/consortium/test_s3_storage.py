"""Ciphertexts in an S3-compatible bucket: a round stores, sums, serves and retains them there.

The bucket is moto's S3 server (``moto.server.ThreadedMotoServer``) on a local port, spoken
to over real HTTP by boto3: it stands in for AWS S3, MinIO or Ceph RGW. Only the store
changes; the round tests in ``test_rounds.py`` show the same behaviour on the filesystem.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from django.test import Client
from moto.server import ThreadedMotoServer

from consortium.rounds import storage, storage_s3
from consortium.rounds.models import RoundState
from consortium.rounds.services import scheduler_tick
from consortium.rounds.services.retention import blobs_retain
from he.codec import decrypt_vector, unpack_aggregate
from simulation.processes import free_port
from tests.conftest import PARAMS, Persona, encrypted_update, upload_headers
from tests.consortium.test_retention import make_round, stored

pytestmark = pytest.mark.django_db
BUCKET = "consortium-blobs"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server: str, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # The keys come from the portal's settings (the chart mounts them as files), not AWS_*.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    settings.BLOB_S3_ACCESS_KEY_ID = "consortium-portal"
    settings.BLOB_S3_SECRET_ACCESS_KEY = "not-a-real-secret"
    settings.BLOB_STORE = "s3"
    settings.BLOB_S3_BUCKET = BUCKET
    settings.BLOB_S3_PREFIX = "consortium-a/"
    settings.BLOB_S3_ENDPOINT_URL = s3_server
    settings.BLOB_S3_REGION = "us-east-1"
    storage_s3.reset_client()
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="admin",
        aws_secret_access_key="admin",
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)
    storage_s3.reset_client()


@pytest.fixture
def banks(bank_alpha: Persona, bank_beta: Persona, bank_gamma: Persona) -> list[Persona]:
    return [bank_alpha, bank_beta, bank_gamma]


def _keys(bucket: Any) -> list[str]:
    return sorted(o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def _staged(data: bytes) -> Path:
    tmp = storage.temp_path()
    tmp.write_bytes(data)
    return tmp


def test_a_committed_blob_is_an_object_in_the_bucket_and_no_file_is_left(bucket: Any):
    tmp = _staged(b"ciphertext" * 1000)
    storage.commit(tmp, "uploads/round-00001/alpha-0123.ckks")
    assert _keys(bucket) == ["consortium-a/uploads/round-00001/alpha-0123.ckks"]
    assert not tmp.exists() and not storage.absolute("uploads").exists()
    assert storage.blob_size("uploads/round-00001/alpha-0123.ckks") == 10_000
    stream = storage.open_blob("uploads/round-00001/alpha-0123.ckks")
    assert stream is not None and stream.read() == b"ciphertext" * 1000


def test_local_copies_hold_the_bytes_and_are_gone_afterwards(bucket: Any):
    storage.commit(_staged(b"a" * 70), "x/a.ckks")
    storage.commit(_staged(b"b" * 30), "x/b.ckks")
    with storage.local_copies(["x/a.ckks", "x/b.ckks"]) as paths:
        assert [p.read_bytes() for p in paths] == [b"a" * 70, b"b" * 30]
    assert not any(p.exists() for p in paths)


def test_a_blob_not_in_the_bucket_reads_as_missing_everywhere(bucket: Any):
    assert storage.open_blob("x/none.ckks") is None
    assert storage.blob_size("x/none.ckks") is None
    assert storage.blob_remove("x/none.ckks") is False
    with (
        pytest.raises(FileNotFoundError, match=r"x/none\.ckks"),
        storage.local_copies(["x/none.ckks"]),
    ):
        pass


def _submit(client: Client, ckks: Any, rnd: Any, persona: Any, seed: int) -> np.ndarray:
    body, plain = encrypted_update(ckks, rnd.vector_length, seed=seed, n=100)
    response = client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(persona, rnd.number, body),
    )
    assert response.status_code == 201, response.content
    return plain


def test_a_round_on_s3_is_summed_served_and_retained_from_the_bucket(
    bucket, client, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    personas = [bank_alpha, bank_beta, bank_gamma]
    plains = [_submit(client, ckks, open_round, p, seed=i) for i, p in enumerate(personas)]
    assert len(_keys(bucket)) == 3
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.PUBLISHED
    assert f"consortium-a/{open_round.aggregate_blob}" in _keys(bucket)
    assert list(storage.blob_root().rglob("*.ckks")) == []  # nothing kept on local disk

    response = client.get(f"/api/v1/rounds/{open_round.number}/aggregate", **bank_alpha.auth())
    assert response.status_code == 200
    summed = decrypt_vector(ckks.secret, io.BytesIO(b"".join(response.streaming_content)), PARAMS)
    avg, total = unpack_aggregate(summed)
    expected = np.sum(plains, axis=0)
    assert total == 300
    assert np.max(np.abs(avg - expected[:-2] / expected[-2])) < 1e-6

    bucket.delete_object(Bucket=BUCKET, Key=f"consortium-a/{open_round.aggregate_blob}")
    gone = client.get(f"/api/v1/rounds/{open_round.number}/aggregate", **bank_alpha.auth())
    assert gone.status_code == 410 and b"retention" in gone.content


def test_the_readiness_probe_names_a_bucket_that_does_not_answer(bucket, client, settings):
    assert client.get("/readyz").json()["checks"]["storage"] == "ok"
    settings.BLOB_S3_BUCKET = "no-such-bucket"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "no-such-bucket" in answer.json()["checks"]["storage"]


def test_retention_deletes_old_rounds_objects_from_the_bucket(bucket, policy, epoch, banks):
    made: list[Any] = []
    for number in range(1, 5):
        base = made[-1] if made else None
        made.append(make_round(number, RoundState.PUBLISHED, policy, epoch, banks, base_round=base))
    assert len(_keys(bucket)) == 4 * 4
    plan = blobs_retain(keep_published=2, actor="test")
    # Rounds 3 and 4 are kept, and 2 as the base round 3 builds on: only round 1 goes.
    assert [r.number for r in plan.rounds] == [1] and plan.kept_as_base == (2,)
    assert [len(stored(r)) for r in made] == [0, 4, 4, 4]
    assert len(_keys(bucket)) == 3 * 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSORTIUM_BLOB_STORE": "ftp"}, "choose 'filesystem' or 's3'"),
        ({"CONSORTIUM_BLOB_STORE": "s3"}, "needs CONSORTIUM_S3_BUCKET"),
    ],
)
def test_a_bad_store_setting_stops_the_portal_with_the_variable_named(env, message):
    result = subprocess.run(
        [sys.executable, "-c", "import consortium.settings"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and message in result.stderr
