"""Regenerate the fuzzers' seed corpus and the public context the seeds are encrypted under.

    .venv/bin/python tests/fuzz/make_corpus.py

Writes tests/fuzz/data/public_context.bin and tests/fuzz/corpus/{validate,upload,loaders}/.
Run it only when the container format changes: the committed seeds are what CI starts from.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from he.codec import encrypt_vector  # noqa: E402
from he.keys import fingerprint, generate_secret_context, public_context_bytes  # noqa: E402
from he.params import CkksParams  # noqa: E402
from he.wire import MAGIC  # noqa: E402

# The vector length the harnesses expect (a one-chunk update).
LENGTH = 370


def container_seeds() -> dict[str, bytes]:
    params = CkksParams()
    secret = generate_secret_context(params)
    public = public_context_bytes(secret)
    (HERE / "data").mkdir(exist_ok=True)
    (HERE / "data" / "public_context.bin").write_bytes(public)
    fp = fingerprint(public)
    buf = io.BytesIO()
    encrypt_vector(secret, np.linspace(-1, 1, LENGTH), params, fp, buf)
    valid = buf.getvalue()
    header_len = struct.unpack(">I", valid[8:12])[0]
    header_end = 12 + header_len
    return {
        "valid": valid,
        "header-only": valid[:header_end],
        "header-and-chunk-length": valid[: header_end + 4],
        "trailing-byte": valid + b"\0",
        "magic-only": MAGIC,
        "empty-json-header": MAGIC + struct.pack(">I", 2) + b"{}",
        # Found by this fuzzer: both raised past UpdateInvalid (a 500 on upload).
        "header-length-infinity": _with_header(
            valid, b'{"chunks":1,"fingerprint":"%s","length":1e999,"slots":2048}' % fp.encode()
        ),
        "header-nested-deeply": _with_header(valid, b"[" * 2000 + b"]" * 2000),
    }


def _with_header(container: bytes, header: bytes) -> bytes:
    """``container`` with its JSON header replaced by ``header``."""
    old_end = 12 + struct.unpack(">I", container[8:12])[0]
    return MAGIC + struct.pack(">I", len(header)) + header + container[old_end:]


LOADER_SEEDS = {
    "ibm.csv": (
        "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
        "Amount Paid,Payment Currency,Payment Format,Is Laundering\n"
        "2022/09/01 00:20,010,8000EBD30,010,8000EBD30,3697.34,US Dollar,3697.34,US Dollar,"
        "Reinvestment,0\n"
        "2022/09/01 00:21,3208,8000F4580,001,8000F5340,0.01,US Dollar,0.01,US Dollar,Cheque,1\n"
    ),
    "paysim.csv": (
        "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,"
        "newbalanceDest,isFraud,isFlaggedFraud\n"
        "1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0\n"
        "1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0\n"
    ),
    "ulb.csv": (
        "Time," + ",".join(f"V{i}" for i in range(1, 29)) + ",Amount,Class\n"
        "0," + ",".join(f"{(-1) ** i * 0.1 * i:.3f}" for i in range(1, 29)) + ",149.62,0\n"
        "1," + ",".join(f"{0.05 * i:.3f}" for i in range(1, 29)) + ",2.69,1\n"
    ),
    "header-only.csv": "step,type,amount\n",
}


def main() -> None:
    corpus = HERE / "corpus"
    for name, body in container_seeds().items():
        for target, prefix in (("validate", b""), ("upload", b"\x00")):
            (corpus / target).mkdir(parents=True, exist_ok=True)
            (corpus / target / name).write_bytes(prefix + body)
    (corpus / "loaders").mkdir(parents=True, exist_ok=True)
    for name, text in LOADER_SEEDS.items():
        (corpus / "loaders" / name).write_text(text)


if __name__ == "__main__":
    main()
