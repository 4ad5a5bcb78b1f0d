"""atheris harness for the node's transaction loaders (IBM AML, PaySim, ULB CSV).

    .venv/bin/python tests/fuzz/fuzz_loaders.py [libFuzzer flags] CORPUS

Each input is written to a file and read with `bank_node.data.load_transactions` (small
chunks, so the chunked path runs too). A crash is any exception other than `DataError`,
which must name the file and, where it can, the line and column.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

with atheris.instrument_imports(include=["bank_node.data"]):
    from bank_node.data import DataError, load_transactions

PATH = (
    Path(tempfile.mkdtemp(prefix="fuzz-loaders-", dir=os.environ.get("FUZZ_WORK_DIR")))
    / "transactions.csv"
)


def one(data: bytes) -> None:
    PATH.write_bytes(data)
    try:
        frame = load_transactions(PATH, chunksize=2)
    except DataError as exc:
        if str(PATH) not in str(exc):
            raise AssertionError(f"a DataError that does not name the file: {exc}") from exc
        return
    # Whatever loads has the normalised columns, one row per data line at most.
    assert "label" in frame.columns and "timestamp" in frame.columns


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
