"""atheris harness for the upload path: the container validation alone, or the whole view.

    FUZZ_TARGET=validate .venv/bin/python tests/fuzz/fuzz_validate.py [libFuzzer flags] CORPUS
    FUZZ_TARGET=upload   .venv/bin/python tests/fuzz/fuzz_validate.py [libFuzzer flags] CORPUS

``validate`` feeds each input to `he.validate.validate_vector` as an update for a round
of `LENGTH` values under the committed public context (tests/fuzz/data). ``upload`` PUTs
it through the real upload view (Django test client, a throwaway SQLite database), signed
by the bank unless the first byte says to fuzz the digest and signature headers too.

A crash is any exception other than `UpdateInvalid` (validate) or any answer >= 500
(upload); libFuzzer also reports hangs (-timeout) and memory blow-ups (-rss_limit_mb).
tests/fuzz/test_fuzz.py runs both for a bounded time on the committed seed corpus.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

with atheris.instrument_imports(include=["he"]):
    from he.errors import UpdateInvalid
    from he.keys import fingerprint, load_public_context
    from he.params import CkksParams
    from he.validate import validate_vector

PUBLIC = (HERE / "data" / "public_context.bin").read_bytes()
PARAMS = CkksParams()
LENGTH = 370  # as in make_corpus.py


def validate_target() -> Callable[[bytes], None]:
    ctx = load_public_context(PUBLIC, PARAMS)
    fp = fingerprint(PUBLIC)

    def one(data: bytes) -> None:
        try:
            validate_vector(io.BytesIO(data), ctx, PARAMS, fingerprint=fp, expected_length=LENGTH)
        except UpdateInvalid:
            pass

    return one


def upload_target() -> Callable[[bytes], None]:
    var = tempfile.mkdtemp(prefix="fuzz-upload-", dir=os.environ.get("FUZZ_WORK_DIR"))
    os.environ.update(
        DATABASE_URL=f"sqlite:///{var}/portal.sqlite3",
        CONSORTIUM_VAR_DIR=var,
        DJANGO_SETTINGS_MODULE="consortium.settings",
        CONSORTIUM_UPLOAD_RATE="1000000/s",
        CONSORTIUM_LOG_LEVEL="CRITICAL",
        DJANGO_ALLOWED_HOSTS="testserver",
        # Validate in this process: libFuzzer's coverage feedback sees only this process,
        # and the check is the same function (consortium/rounds/validation_worker.py).
        CONSORTIUM_VALIDATION_PROCESS="0",
    )
    with atheris.instrument_imports(include=["he", "consortium", "audit"]):
        import django

        django.setup()
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from django.core.management import call_command
        from django.db import transaction
        from django.test import Client

        from he.signing import public_key_b64, sign, update_message

        call_command("migrate", verbosity=0)
        number, bank, credential, key = _open_round(Ed25519PrivateKey.generate(), public_key_b64)
    client = Client()
    url = f"/api/v1/rounds/{number}/update"
    logging.disable(logging.CRITICAL)  # a log line per refused input would halve the speed

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        signed = fdp.ConsumeInt(1) < 224  # mostly well-signed, so validation runs deep
        if signed:
            body = fdp.ConsumeBytes(fdp.remaining_bytes())
            digest = hashlib.sha256(body).hexdigest()
            signature = sign(key, update_message(number, bank, digest))
        else:  # header values arrive as latin-1 text from any WSGI server
            digest = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80)).decode("latin-1")
            signature = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)).decode("latin-1")
            body = fdp.ConsumeBytes(fdp.remaining_bytes())
        # Each attempt runs in a transaction that is rolled back: the round stays open and
        # the bank stays without a submission, so every input gets the full validation.
        with transaction.atomic():
            response = client.put(
                url,
                data=body,
                content_type="application/octet-stream",
                HTTP_AUTHORIZATION=f"Bearer {credential}",
                HTTP_X_UPDATE_DIGEST=digest,
                HTTP_X_UPDATE_SIGNATURE=signature,
            )
            transaction.set_rollback(True)
        if response.status_code >= 500:
            raise RuntimeError(f"HTTP {response.status_code}: {response.content[:500]!r}")

    return one


def _open_round(key, public_key_b64):
    from datetime import timedelta

    from django.utils import timezone

    from consortium.members.services import bank_create
    from consortium.rounds.models import RoundPolicy
    from consortium.rounds.services import key_epoch_register, round_open

    bank, credential = bank_create(
        slug="fuzz", name="Fuzz", actor="fuzz", signing_public_key=public_key_b64(key)
    )
    epoch = key_epoch_register(public_context=PUBLIC, ckks_params=PARAMS.to_dict(), actor="fuzz")
    # Made directly, not by policy_create: that would import torch to size the model.
    policy = RoundPolicy.objects.create(
        name="fuzz",
        version=1,
        active=True,
        n_features=44,
        vector_length=LENGTH,
        min_banks=3,
        deadline=timedelta(days=7),
        normalize_features=False,
        ckks_params=PARAMS.to_dict(),
        secure_aggregation="v1",  # fuzzes the CKKSVEC1 upload path
        created_by="fuzz",
    )
    rnd = round_open(policy=policy, epoch=epoch, now=timezone.now())
    return rnd.number, bank.slug, credential, key


def main() -> None:
    target = os.environ.get("FUZZ_TARGET", "validate")
    one = {"validate": validate_target, "upload": upload_target}[target]()
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
