"""Ciphertext blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...), via boto3.

Settings: ``BLOB_S3_BUCKET`` (required), ``BLOB_S3_PREFIX`` (key prefix, default empty),
``BLOB_S3_ENDPOINT_URL`` (for a store that is not AWS; empty for AWS), ``BLOB_S3_REGION``.
Credentials: ``BLOB_S3_ACCESS_KEY_ID``/``BLOB_S3_SECRET_ACCESS_KEY`` when set (the chart
mounts them as files), else boto3's own chain (``AWS_*`` variables, a web identity token,
an instance role). Only
``consortium.rounds.storage`` calls this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

_MISSING = {"404", "NoSuchKey", "NotFound"}
_lock = threading.Lock()


@cache
def _client() -> Any:
    # boto3 sessions are not thread-safe to create; a client is, once made.
    with _lock:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=settings.BLOB_S3_ENDPOINT_URL or None,
            region_name=settings.BLOB_S3_REGION or None,
            aws_access_key_id=settings.BLOB_S3_ACCESS_KEY_ID or None,
            aws_secret_access_key=settings.BLOB_S3_SECRET_ACCESS_KEY or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )


def reset_client() -> None:
    """Forget the client (settings changed: tests, or a reloaded configuration)."""
    _client.cache_clear()


def _key(relpath: str) -> str:
    return f"{settings.BLOB_S3_PREFIX}{relpath}"


def _bucket() -> str:
    return str(settings.BLOB_S3_BUCKET)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


def put(path: Path, relpath: str) -> None:
    """Store a local file under ``relpath`` (one object, visible whole or not at all)."""
    try:
        _client().upload_file(str(path), _bucket(), _key(relpath))
    except (BotoCoreError, ClientError) as exc:
        raise OSError(f"the blob store refused {relpath}: {exc}") from exc


def open_stream(relpath: str) -> BinaryIO | None:
    """The object's body as a stream; None when it is not stored."""
    answer = _stored_or_none(
        "give", relpath, lambda: _client().get_object(Bucket=_bucket(), Key=_key(relpath))
    )
    return None if answer is None else cast(BinaryIO, answer["Body"])


def size(relpath: str) -> int | None:
    head = _stored_or_none(
        "describe", relpath, lambda: _client().head_object(Bucket=_bucket(), Key=_key(relpath))
    )
    return None if head is None else int(head["ContentLength"])


def _stored_or_none(what: str, relpath: str, call: Callable[[], Any]) -> Any | None:
    """``call()``'s answer; None when the object is not stored; any other failure an OSError."""
    try:
        return call()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise OSError(f"the blob store did not {what} {relpath}: {exc}") from exc
    except BotoCoreError as exc:
        raise OSError(f"the blob store did not {what} {relpath}: {exc}") from exc


def remove(relpath: str) -> bool:
    """Delete the object; False when it was not stored (S3's delete says nothing of that)."""
    if size(relpath) is None:
        return False
    try:
        _client().delete_object(Bucket=_bucket(), Key=_key(relpath))
    except (BotoCoreError, ClientError) as exc:
        raise OSError(f"the blob store did not delete {relpath}: {exc}") from exc
    return True


def reachable() -> str:
    """ "ok" when the bucket answers, else why not (for the readiness probe)."""
    try:
        _client().head_bucket(Bucket=_bucket())
    except ClientError as exc:
        return f"bucket {_bucket()} unavailable: {exc.response.get('Error', {}).get('Code')}"
    except BotoCoreError as exc:
        return f"bucket {_bucket()} unreachable: {exc.__class__.__name__}"
    return "ok"
