"""A world of any size, generated and written a window of days at a time in bounded memory.

The in-memory generator (`simulation.world.generate`) draws every flow of the whole period
from one random stream, so it cannot make one week without making all the weeks before
it. Here each window of ``chunk_days`` days has its own stream (seeded from the world's
seed and the window's number) for the *events* of those days: card payments, salaries
paid, attempts and their transactions. What describes the world rather than an event
(banks, accounts, who works where, each person's bills, suppliers, popular merchants) is
drawn once, from the world's stream and a stream of its own, and shared by all windows.
The design is the same as in memory (rates per day, typologies and their banks, holdouts,
labels); the world is another one than the in-memory path draws for the same seed.

Memory is the account table and those fixed draws (a few hundred bytes per account) plus
one window's rows; the rows of a window are formatted bank by bank and appended to the
banks' files. A scheme that starts near a window's end runs on into the next window: its
later rows are carried over and written, in time order, with that window's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from simulation.world.banks import Rows, World, calendar
from simulation.world.benign import JOBS, benign_flows
from simulation.world.files import (
    bank_counts,
    bank_ids,
    bank_table,
    visible_rows,
    write_bank_file,
)
from simulation.world.presets import TYPOLOGIES
from simulation.world.typologies import laundering

T = TypeVar("T")


class FixedDraws:
    """The world's fixed draws, made from their own stream the first time a window asks."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 1])
        self.made: dict[str, Any] = {}

    def get(self, key: str, draw: Callable[[np.random.Generator], T]) -> T:
        if key not in self.made:
            self.made[key] = draw(self.rng)
        value: T = self.made[key]
        return value


class Window(World):
    """Days ``[first_day, first_day + days)`` of a world, seen as a world of their own.

    Times are minutes from the window's start; ``period_start``/``period_end`` and
    ``train_end`` are the world's, in those minutes. Banks, accounts and the fixed draws
    are the world's objects, shared: a mule account one window opens exists in the next.
    """

    def __init__(
        self,
        world: World,
        first_day: int,
        days: int,
        rng: np.random.Generator,
        fixed: FixedDraws,
    ) -> None:
        vars(self).update(vars(world))  # share (not copy) banks, accounts, calendar of the world
        self.rng = rng
        self._fixed = fixed
        self.offset = first_day * 1440
        self.start = world.start + first_day
        self.days, self.minutes = days, days * 1440
        self.weekday, self.month_start_day = calendar(self.start, days)
        self.train_end = world.train_end - self.offset
        self.period_start, self.period_end = -self.offset, world.minutes - self.offset

    def fixed(self, key: str, draw: Callable[[np.random.Generator], T]) -> T:
        return self._fixed.get(key, draw)

    def earners(self, salary: Rows) -> np.ndarray:
        # Every employee, not those paid in this window: the first window may miss a payday.
        staff: np.ndarray = self._fixed.made[JOBS][0]
        return staff

    def attempt_days(self) -> tuple[float, float]:
        """Days of this window inside the training period and inside the held-out one."""
        lo, hi, split = 0, self.minutes, self.train_end
        train = max(0, min(hi, split) - lo)
        return train / 1440, max(0, hi - max(lo, split)) / 1440


class Tally:
    """The manifest's counts, summed over the windows."""

    def __init__(self, world: World) -> None:
        self.banks: list[dict[str, Any]] = [{} for _ in range(world.n_members)]
        self.rows = 0
        self.laundering_rows = 0
        self.attempts: dict[str, set[int]] = {t: set() for t in TYPOLOGIES}

    def add(self, rows: Rows) -> None:
        self.rows += len(rows.t)
        self.laundering_rows += int((rows.attempt >= 0).sum())
        for k, name in enumerate(TYPOLOGIES):
            self.attempts[name].update(rows.attempt[rows.typology == k].tolist())

    def add_bank(self, index: int, counts: dict[str, Any]) -> None:
        self.banks[index] = _summed(self.banks[index], counts)

    def totals(self) -> dict[str, Any]:
        attempts = {name: len(ids) for name, ids in self.attempts.items()}
        return {"rows": self.rows, "laundering_rows": self.laundering_rows, "attempts": attempts}


def _summed(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key, value in part.items():
        out[key] = (
            _summed(total.get(key, {}), value)
            if isinstance(value, dict)
            else (total.get(key, 0) + value)
        )
    return out


def window_rows(window: Window) -> Rows:
    """One window's visible rows, in the world's minutes (not yet in time order)."""
    rows = Rows.concat([*benign_flows(window), laundering(window)])
    rows.t = rows.t + window.offset
    return visible_rows(window, rows)


def split_at(rows: Rows, end: int) -> tuple[Rows, Rows]:
    """Sort ``rows`` by time (stably) and cut them into those before ``end`` and the rest."""
    rows = rows.take(np.argsort(rows.t, kind="stable"))
    cut = int(np.searchsorted(rows.t, end))
    return rows.take(np.arange(cut)), rows.take(np.arange(cut, len(rows.t)))


MIN_WINDOW_DAYS = 3  # any 3 days hold a weekday, which office-hours flows need


def window_starts(days: int, chunk_days: int) -> list[tuple[int, int]]:
    """``(first day, days)`` of each window; a remainder under 3 days joins the last one."""
    if chunk_days < MIN_WINDOW_DAYS:
        raise ValueError(f"chunk_days must be at least {MIN_WINDOW_DAYS} (or 0: all in memory)")
    firsts = list(range(0, days, chunk_days))
    if len(firsts) > 1 and days - firsts[-1] < MIN_WINDOW_DAYS:
        firsts.pop()
    ends = [*firsts[1:], days]
    return [(first, end - first) for first, end in zip(firsts, ends, strict=True)]


def window_stream(world: World, *, seed: int, chunk_days: int) -> Iterator[tuple[int, Rows]]:
    """Each window's visible rows (in the world's minutes, unsorted) and the window's end.

    Rows of a scheme that runs past the window's end are among them; `in_time_order`
    carries them on.
    """
    fixed, next_attempt = FixedDraws(seed), 0
    for number, (first, days) in enumerate(window_starts(world.days, chunk_days)):
        window = Window(world, first, days, np.random.default_rng([seed, 2, number]), fixed)
        window.attempt_base = next_attempt  # attempt ids stay unique across windows
        rows = window_rows(window)
        next_attempt = max(next_attempt, int(rows.attempt.max(initial=-1)) + 1)
        yield window.offset + window.minutes, rows


def in_time_order(stream: Iterable[tuple[int, Rows]]) -> Iterator[Rows]:
    """The rows of the stream in time order, window by window: each window's rows before
    its end, with those of earlier windows that ran on past theirs."""
    carry = Rows.empty()
    for end, rows in stream:
        ready, carry = split_at(Rows.concat([carry, rows]), end)
        yield ready


def write_windows(world: World, out_dir: Path, *, seed: int, chunk_days: int) -> Tally:
    """Generate ``world`` ``chunk_days`` days at a time, appending to the banks' files."""
    tally = Tally(world)
    stream = window_stream(world, seed=seed, chunk_days=chunk_days)
    for number, rows in enumerate(in_time_order(stream)):
        _write(world, rows, out_dir, tally, append=number > 0)
    return tally


def _write(world: World, rows: Rows, out_dir: Path, tally: Tally, *, append: bool) -> None:
    tally.add(rows)
    bank = world.accounts.bank
    src, dst = bank[rows.src], bank[rows.dst]
    for index, bank_id in enumerate(bank_ids(world)[: world.n_members].tolist()):
        mine = (src == index) | (dst == index)
        tally.add_bank(index, bank_counts(world, rows, mine))
        table = bank_table(world, rows.take(np.flatnonzero(mine)))
        write_bank_file(out_dir / f"bank_{bank_id}.csv", table, append=append)
