"""The periods of a node's streamed features, and its held-out rows scored batch by batch.

A streaming node (``[training] data = "stream"``) never holds its file in memory, so neither
its training period nor its validation and test periods may come from the in-memory split
(`bank_node.splits`). `period_edges` finds, in one pass over the Parquet features' ``tick``,
the same cuts that split puts in a frame: 60/20/20 of the time span, or the
``[evaluation]`` dates. `held_out_scores` scores the validation and test rows with one or
more models as it reads them and keeps per row only its time, line, label and scores (28
bytes with one model, against 176 for its 44 features), then puts the rows in the order the
in-memory split has them (by timestamp, ties in file order), so that order-sensitive
metrics (recall at an alert budget takes equal scores in row order) agree with it.

`training_reference` makes the drift reference of a served model (`models.drift`: decile
bins of each raw feature and of the score over the training period) in two passes: the
bins' edges from a systematic sample of at most ``REFERENCE_SAMPLE`` rows (every k-th
training row; all of them when there are fewer, which gives the in-memory edges), then
each bin's count over every training row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from bank_node.checks import Refused
from bank_node.config_evaluation import Evaluation
from bank_node.data import cumulative_fractions
from bank_node.splits import DEFAULT_FRACTIONS
from bank_node.training import Normalizer
from models.drift import Reference, bin_counts, quantile_edges
from models.stream_data import LABEL, READ_ROWS, TICK, StreamSpec, count_rows, raw_rows
from models.training import predict_scores

LINE = "line"  # each row's line in the bank's file, as bank_node.staging writes it
REFERENCE_SAMPLE = 1_000_000  # rows the drift reference's edges come from (44 MB of features)
_NS_PER_US = 1000


@dataclass(frozen=True)
class PeriodEdges:
    """Where the periods start and end, in ``tick`` nanoseconds.

    Training is ``tick < train_end``; validation ``train_end <= tick < val_end``; test
    ``tick >= test_start`` (``val_end`` and ``test_start`` differ when a bank leaves a gap
    between its dates for late labels).
    """

    train_end: int
    val_end: int
    test_start: int


@dataclass(frozen=True)
class PeriodScores:
    """One period's labels and each model's scores, in the in-memory split's row order."""

    labels: np.ndarray
    scores: list[np.ndarray]


def period_edges(files: tuple[Path, ...], evaluation: Evaluation) -> PeriodEdges:
    """The periods `bank_node.splits.split_frame` would cut the same rows into.

    The in-memory split keeps in a period the rows whose microsecond timestamp is at or
    above ``first + (last - first) * cut``; with whole microseconds that is ``tick`` at or
    above the edge rounded up, in nanoseconds.
    """
    if not evaluation.by_date:
        first, last = _tick_range(files, None)
        cuts = cumulative_fractions(DEFAULT_FRACTIONS)
        return PeriodEdges(
            _edge(first, last, cuts[0]), _edge(first, last, cuts[1]), _edge(first, last, cuts[1])
        )
    assert evaluation.train_before is not None  # by_date
    before = _day_ns(evaluation.train_before)
    first, last = _tick_range(files, before)
    cut = cumulative_fractions((1 - evaluation.validation_fraction, evaluation.validation_fraction))
    start = evaluation.evaluate_from or evaluation.train_before
    return PeriodEdges(_edge(first, last, cut[0]), before, _day_ns(start))


def _edge(first: int, last: int, cut: float) -> int:
    lo, hi = np.int64(first // _NS_PER_US), np.int64(last // _NS_PER_US)
    return int(np.ceil(lo + (hi - lo) * np.float64(cut))) * _NS_PER_US


def _day_ns(day: date) -> int:
    return int(np.datetime64(day.isoformat(), "ns").astype(np.int64))


def _tick_range(files: tuple[Path, ...], before: int | None) -> tuple[int, int]:
    """The first and last ``tick`` of the rows (below ``before`` when given), in one pass."""
    lows, highs = [], []
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(columns=[TICK]):
            ticks = batch.column(TICK)
            if before is not None:
                ticks = ticks.filter(pc.less(ticks, before))
            if len(ticks):
                bounds = pc.min_max(ticks)
                lows.append(bounds["min"].as_py())
                highs.append(bounds["max"].as_py())
    if not lows:
        raise Refused("no_training_rows", f"no training rows in the features of {files[:1]}")
    return min(lows), max(highs)


class _Period:
    """The rows of one period collected batch by batch: time, line, label, scores."""

    def __init__(self, n_models: int) -> None:
        self.parts: list[list[np.ndarray]] = [[] for _ in range(3 + n_models)]

    def add(self, columns: Sequence[np.ndarray]) -> None:
        for part, column in zip(self.parts, columns, strict=True):
            part.append(column)

    def ordered(self) -> PeriodScores:
        ticks, lines, labels, *scores = (
            np.concatenate(p) if p else np.zeros(0) for p in self.parts
        )
        order = np.lexsort((lines, ticks))  # by timestamp, ties in file order
        return PeriodScores(labels[order], [s[order] for s in scores])


def held_out_scores(
    files: tuple[Path, ...],
    columns: Sequence[str],
    edges: PeriodEdges,
    nets: Sequence[torch.nn.Module],
    norm: Normalizer | None,
    *,
    read_rows: int = READ_ROWS,
) -> tuple[PeriodScores, PeriodScores]:
    """(validation, test): each model's scores of those rows, normalised as in training."""
    periods = (_Period(len(nets)), _Period(len(nets)))
    wanted = [*columns, LABEL, TICK, LINE]
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=read_rows, columns=wanted):
            ticks = batch.column(TICK).to_numpy()
            in_val = (ticks >= edges.train_end) & (ticks < edges.val_end)
            in_test = ticks >= edges.test_start
            if not (in_val.any() or in_test.any()):
                continue
            x = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in columns])
            x = x.astype(np.float32, copy=False)
            labels = batch.column(LABEL).to_numpy().astype(np.float32)
            lines = batch.column(LINE).to_numpy()
            for period, rows in zip(periods, (in_val, in_test), strict=True):
                if rows.any():
                    features = x[rows] if norm is None else norm.apply(x[rows])
                    scores = [predict_scores(net, features) for net in nets]
                    period.add([ticks[rows], lines[rows], labels[rows], *scores])
    return periods[0].ordered(), periods[1].ordered()


def training_reference(
    spec: StreamSpec,
    net: torch.nn.Module,
    norm: Normalizer | None,
    names: Sequence[str],
    *,
    sample_rows: int = REFERENCE_SAMPLE,
) -> Reference | None:
    """The drift reference of ``net`` over the training rows ``spec`` reads (None: none).

    ``spec`` must read the raw rows (no normalisation, no shuffling): the features are
    binned raw, the score is ``net``'s on the rows normalised by ``norm``.
    """
    total = count_rows(spec)
    if total == 0:
        return None
    step = -(-total // sample_rows)  # every step-th row: at most sample_rows of them

    def scored(x: np.ndarray) -> np.ndarray:
        return predict_scores(net, x if norm is None else norm.apply(x))

    seen, xs = 0, []
    for x, _ in raw_rows(spec):
        xs.append(x[(-seen) % step :: step])
        seen += len(x)
    sample = np.concatenate(xs)
    edges = [quantile_edges(sample[:, j]) for j in range(sample.shape[1])]
    score_edges = quantile_edges(scored(sample))
    del sample, xs
    counts = [np.zeros(len(e) + 1, np.int64) for e in edges]
    score_counts = np.zeros(len(score_edges) + 1, np.int64)
    for x, _ in raw_rows(spec):
        for j, e in enumerate(edges):
            counts[j] += bin_counts(x[:, j].astype(np.float64), e)
        score_counts += bin_counts(scored(x), score_edges)
    return Reference(list(names), edges, counts, score_edges, score_counts)
