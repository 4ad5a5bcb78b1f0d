"""Feature pipeline at scale: peak memory and throughput, pandas, DuckDB and numpy (issue 18).

For each size a synthetic bank's IBM-format CSV is written in chunks (bounded memory),
then each engine featurises it in a child process of its own, so that process's peak RSS
(``os.wait4``'s ``ru_maxrss``) is that engine's alone, and so is its CPU time (user +
system, every thread: on a shared machine the figure that load does not inflate):

* ``pandas``: ``bank_node.data.load_transactions`` + ``models.features.compute_features``,
  the whole file in memory (today's node);
* ``duckdb``: ``bank_node.staging.stage`` (chunked CSV to Parquet) + ``bank_node.
  features_duckdb.write_features`` (the SQL of ``models.features_sql``, Parquet by date);
* ``numpy``: ``bank_node.features_numpy.write_features`` (CSV read by pyarrow, accounts in
  hash buckets, ``models.features_vector``; Parquet by date), ``--memory-limit`` sizing its
  buckets;
* ``train`` (``--train``): on DuckDB's Parquet features, the statistics round's moments in
  one streaming pass (``models.stream_data.stream_moments``) and one local epoch streamed
  (``models.training.train_stream``, the demo policy's model, ``--batch-size`` rows a step,
  a shuffle buffer of ``--buffer-rows``), in a child of its own: the pipeline's peak is the
  larger of the ``duckdb`` and ``train`` children's.

Usage:
  python benchmarks/scale.py --sizes 1000000 5000000 20000000 --pandas-max 5000000 --train
  python benchmarks/scale.py --sizes 20000000 50000000 --engines numpy
  python benchmarks/scale.py --sizes 5000000 --heavy 0.4 --heavy-limits 256MB 1GB
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulation.world.presets import IBM_HEADER  # noqa: E402

FORMATS = ["ACH", "Wire", "Cheque", "Credit Card", "Cash", "Bitcoin", "Reinvestment"]


def write_bank(
    path: Path, rows: int, *, seed: int = 0, chunk_rows: int = 500_000, heavy: float = 0.0
) -> Path:
    """A bank's CSV of ``rows`` transactions over a year, written ``chunk_rows`` at a time.

    Bank "1" is the sender or the receiver of every row; about one account per 40 rows,
    with skewed activity (a few accounts very busy), 20 counterparty banks, amounts
    log-normal, one row in a thousand labelled. Rows are in time order, as banks' files are.
    ``heavy``: the share of rows whose bank-1 end is one account (as `hi-large`'s bank 1,
    whose busiest account is in 14 % of its rows).
    """
    rng = np.random.default_rng(seed)
    accounts = max(1_000, rows // 40)
    minutes = 365 * 24 * 60
    chunks = max(1, -(-rows // chunk_rows))
    with path.open("w", newline="") as handle:
        handle.write(",".join(IBM_HEADER) + "\n")
        for i in range(chunks):
            n = min(chunk_rows, rows - i * chunk_rows)
            lo, hi = i * minutes // chunks, (i + 1) * minutes // chunks
            _chunk(rng, n, accounts, np.sort(rng.integers(lo, hi, n)), heavy).to_csv(
                handle, header=False, index=False, lineterminator="\n"
            )
    return path


def _chunk(
    rng: np.random.Generator, n: int, accounts: int, minute: np.ndarray, heavy: float = 0.0
) -> pd.DataFrame:
    own = rng.random(n) < 0.5  # is bank 1 the sender?
    mine = (accounts * rng.random(n) ** 3).astype(np.int64)  # skewed: few busy accounts
    if heavy:
        mine[rng.random(n) < heavy] = accounts  # one account beyond the others
    other = (accounts * rng.random(n) ** 2).astype(np.int64)
    other_bank = np.where(rng.random(n) < 0.3, "1", rng.integers(2, 22, n).astype(str))
    src_bank, dst_bank = np.where(own, "1", other_bank), np.where(own, other_bank, "1")
    src, dst = np.where(own, mine, other), np.where(own, other, mine)
    amount = np.round(np.exp(rng.normal(5, 2, n)), 2) + 0.01
    stamps = pd.Timestamp("2023-01-01") + pd.to_timedelta(minute, unit="min")
    return pd.DataFrame({
        "ts": stamps.strftime("%Y/%m/%d %H:%M"),
        "fb": src_bank, "fa": np.char.add("A", src.astype(str)),
        "tb": dst_bank, "ta": np.char.add("A", dst.astype(str)),
        "ar": amount, "rc": "US Dollar", "ap": amount, "pc": "US Dollar",
        "fmt": rng.choice(FORMATS, n),
        "y": (rng.random(n) < 1e-3).astype(int),
    })  # fmt: skip


def run_engine(
    engine: str,
    source: Path,
    work: Path,
    *,
    memory_limit: str = "2GB",
    save: bool = False,
    slicing: bool = True,
) -> tuple[dict[str, Any], float]:
    """Run one engine in a child process; its JSON report and its peak RSS in MiB.

    For ``train``, ``memory_limit`` is ``"batch_size,buffer_rows"``; ``slicing=False``: the
    numpy engine computes every bucket in one piece (as before busy accounts were sliced).
    """
    argv = [sys.executable, __file__, "child", engine, str(source), str(work), memory_limit]
    flags = [*(["--save"] if save else []), *([] if slicing else ["--no-slicing"])]
    process = subprocess.Popen([*argv, *flags], stdout=subprocess.PIPE)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{engine} on {source} exited with {process.returncode}")
    report = json.loads(output.decode().strip().splitlines()[-1])
    report["cpu_s"] = usage.ru_utime + usage.ru_stime  # all the child's threads
    return report, usage.ru_maxrss / 1024


def _train_child(features: Path, batching: str) -> dict[str, Any]:
    """Moments in one pass, then one streamed epoch, over the Parquet feature files."""
    import torch

    from bank_node.training import Normalizer
    from models.features import FEATURE_NAMES
    from models.nets import build_model
    from models.stream_data import StreamSpec, parquet_files, stream_moments
    from models.training import train_stream
    from protocol.policy import DEFAULT_MODEL_SPEC

    torch.set_num_threads(1)  # the node's default torch_threads
    batch_size, buffer_rows = (int(v) for v in batching.split(","))
    spec = StreamSpec(parquet_files(features), tuple(FEATURE_NAMES), shuffle=False)
    start = time.perf_counter()
    moments, rows = stream_moments(spec)
    counted = time.perf_counter()
    norm = Normalizer.from_moments(moments, 1, rows)
    spec = StreamSpec(
        spec.files, spec.columns, batch_size=batch_size, buffer_rows=buffer_rows,
        mean=norm.mean, std=norm.std,
    )  # fmt: skip
    model = build_model(DEFAULT_MODEL_SPEC, len(FEATURE_NAMES))
    train_stream(model, spec, epochs=1, lr=1e-3)
    end = time.perf_counter()
    return {"rows": rows, "read_s": counted - start, "features_s": end - counted}


def _child(
    engine: str, source: Path, work: Path, memory_limit: str, save: bool, slicing: bool = True
) -> None:
    start = time.perf_counter()
    report: dict[str, Any]
    if engine == "train":
        report = _train_child(source, memory_limit)
        loaded = start + report["read_s"]
    elif engine == "pandas":
        from bank_node.data import load_transactions
        from models.features import compute_features

        frame = load_transactions(source)
        loaded = time.perf_counter()
        features = compute_features(frame)
        if save:
            np.save(work / "pandas.npy", features)
        report = {"rows": len(frame), "read_s": loaded - start}
    elif engine == "numpy":
        from bank_node.features_duckdb import EngineSettings
        from bank_node.features_numpy import write_features as numpy_features

        settings = EngineSettings(memory_limit=memory_limit, temp_directory=work / "spill")
        _, _, rows = numpy_features(source, work / "features", settings=settings, slicing=slicing)
        loaded = start  # one pass reads and computes: no separate read time
        report = {"rows": rows, "read_s": 0.0, **({} if slicing else {"engine": "numpy*"})}
    else:
        from bank_node.features_duckdb import EngineSettings, write_features
        from bank_node.staging import stage

        work.mkdir(parents=True, exist_ok=True)
        staged = stage(source, work / "staged.parquet")
        loaded = time.perf_counter()
        settings = EngineSettings(memory_limit=memory_limit, temp_directory=work / "spill")
        write_features(staged, work / "features", settings=settings)
        report = {"rows": staged.rows, "read_s": loaded - start}
    end = time.perf_counter()
    report = {"engine": engine} | report | {"features_s": end - loaded, "total_s": end - start}
    print(json.dumps(report))


def measure(
    size: int, work: Path, engines: list[str], memory_limit: str, batching: str | None = None
) -> list[dict[str, Any]]:
    """The engines on one generated bank of ``size`` rows (the CSV is kept for re-runs);
    with ``batching`` (``"batch_size,buffer_rows"``), one streamed epoch on DuckDB's features."""
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"bank_{size}.csv"
    if not source.exists():
        started = time.perf_counter()
        write_bank(source.with_suffix(".tmp"), size).rename(source)
        print(f"  wrote {source.name} in {time.perf_counter() - started:.0f} s", flush=True)
    results = []
    for engine in engines:
        out = work / f"{engine}-{size}"
        shutil.rmtree(out, ignore_errors=True)  # a previous run's features
        results.append(_record(run_engine(engine, source, out, memory_limit=memory_limit)))
        if engine in ("duckdb", "numpy") and batching is not None:
            results.append(
                _record(run_engine("train", out / "features", out, memory_limit=batching))
            )
        shutil.rmtree(out, ignore_errors=True)
    return results


def measure_heavy(size: int, work: Path, share: float, limits: list[str]) -> None:
    """The numpy engine on a bank where one account is in ``share`` of the rows, at each
    memory limit, with its buckets computed in one piece and then in time slices."""
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"bank_{size}_heavy{round(share * 100)}.csv"
    if not source.exists():
        started = time.perf_counter()
        write_bank(source.with_suffix(".tmp"), size, heavy=share).rename(source)
        print(f"  wrote {source.name} in {time.perf_counter() - started:.0f} s", flush=True)
    for limit in limits:
        for slicing in (False, True):
            out = work / f"numpy-{size}-heavy"
            shutil.rmtree(out, ignore_errors=True)
            print(f"  memory_limit {limit}, slicing {'on' if slicing else 'off'}:", flush=True)
            _record(run_engine("numpy", source, out, memory_limit=limit, slicing=slicing))
            shutil.rmtree(out, ignore_errors=True)


def featurise_world(world: Path, work: Path, engine: str, memory_limit: str) -> None:
    """Every ``bank_*.csv`` of a generated world featurised by ``engine``, one child process
    a bank (largest first), each bank's features removed before the next: the `hi-large`
    run of issue 18. Prints a line a bank and the totals."""
    banks = sorted(world.glob("bank_*.csv"), key=lambda f: f.stat().st_size, reverse=True)
    if not banks:
        raise SystemExit(
            f"{world}: no bank_*.csv files (write one with python -m simulation synth)"
        )
    rows, seconds, peak = 0, 0.0, 0.0
    for bank in banks:
        out = work / f"{engine}-{bank.stem}"
        shutil.rmtree(out, ignore_errors=True)
        print(f"{bank.name}: {bank.stat().st_size / 2**20:,.0f} MiB", flush=True)
        report = _record(run_engine(engine, bank, out, memory_limit=memory_limit))
        shutil.rmtree(out, ignore_errors=True)
        rows += report["rows"]
        seconds += report["total_s"]
        peak = max(peak, report["peak_rss_mib"])
    print(f"world {world}: {len(banks)} banks, {rows:,} rows in {seconds:,.0f} s "
          f"({rows / seconds / 1e3:,.0f}k tx/s), largest peak RSS {peak:,.1f} MiB")  # fmt: skip


def _record(run: tuple[dict[str, Any], float]) -> dict[str, Any]:
    report, rss = run
    report |= {"peak_rss_mib": round(rss, 1), "tx_per_s": report["rows"] / report["total_s"]}
    print(_line(report), flush=True)
    return report


def _line(r: dict[str, Any]) -> str:
    return (
        f"  {r['engine']:>6} {r['rows']:>12,} rows  read {r['read_s']:7.1f} s  features "
        f"{r['features_s']:7.1f} s  total {r['total_s']:7.1f} s  "
        f"{r['tx_per_s'] / 1e3:7.0f}k tx/s  peak RSS {r['peak_rss_mib']:8.1f} MiB  "
        f"CPU {r.get('cpu_s', 0.0):7.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    p.add_argument(
        "--engines",
        nargs="+",
        default=["numpy", "duckdb", "pandas"],
        choices=["numpy", "duckdb", "pandas"],
        help="in this order, each size",
    )
    p.add_argument("--pandas-max", type=int, default=5_000_000, help="largest size for pandas")
    p.add_argument("--duckdb-max", type=int, default=5_000_000, help="largest size for DuckDB")
    p.add_argument("--memory-limit", default="2GB", help="DuckDB's memory_limit, numpy's budget")
    p.add_argument("--work", type=Path, default=Path("var/scale-bench"))
    p.add_argument("--train", action="store_true", help="also one streamed epoch (and moments)")
    p.add_argument("--batch-size", type=int, default=256, help="rows per step when training")
    p.add_argument("--buffer-rows", type=int, default=262_144, help="the shuffle buffer")
    p.add_argument("--world", type=Path, help="featurise this world's bank files instead")
    p.add_argument(
        "--heavy",
        type=float,
        help="instead: the numpy engine on a bank with one account in this share of the rows "
        "(each --sizes), slicing off then on, at each --heavy-limits",
    )
    p.add_argument("--heavy-limits", nargs="+", default=["256MB", "1GB"])
    args = p.parse_args(argv)
    if args.heavy is not None:
        for size in args.sizes:
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"{size:,} rows, one account in {args.heavy:.0%}; load {load}", flush=True)
            measure_heavy(size, args.work, args.heavy, args.heavy_limits)
        return 0
    if args.world is not None:
        featurise_world(args.world, args.work, args.engines[0], args.memory_limit)
        return 0
    batching = f"{args.batch_size},{args.buffer_rows}" if args.train else None
    print(f"cores: {len(os.sched_getaffinity(0))}, memory_limit {args.memory_limit}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    largest = {"pandas": args.pandas_max, "duckdb": args.duckdb_max}
    peaks: dict[str, list[dict[str, Any]]] = {}
    for size in args.sizes:
        print(f"{size:,} transactions", flush=True)
        engines = [e for e in args.engines if size <= largest.get(e, size)]
        for report in measure(size, args.work, engines, args.memory_limit, batching):
            peaks.setdefault(report["engine"], []).append(report)
    for engine, runs in peaks.items():
        if len(runs) > 1:
            ratio = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
            print(f"{engine} peak RSS {runs[-1]['rows']:,} / {runs[0]['rows']:,} rows: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        engine, source, work, memory_limit = sys.argv[2:6]
        flags = sys.argv[6:]
        _child(engine, Path(source), Path(work), memory_limit, "--save" in flags,
               "--no-slicing" not in flags)  # fmt: skip
        sys.exit(0)
    sys.exit(main())
