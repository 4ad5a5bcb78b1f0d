"""Banks, accounts and calendar of one generated world, and the rows flows produce."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np

from simulation.world.presets import (
    BENIGN_KINDS,
    COMPANY,
    CURRENCIES,
    HOME_CURRENCIES,
    HOUR_W,
    MERCHANT,
    SEGMENTS,
    TYPOLOGIES,
    UNITS_PER_USD,
    UTILITY,
)

T = TypeVar("T")


@dataclass
class Rows:
    """Columns of generated transactions; `t` is minutes since the world's start."""

    t: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    usd: np.ndarray
    fmt: np.ndarray
    kind: np.ndarray
    attempt: np.ndarray
    typology: np.ndarray

    @classmethod
    def benign(cls, t: Any, src: Any, dst: Any, usd: Any, fmt: Any, kind: str) -> Rows:
        n = len(t)
        return cls(
            np.asarray(t, np.int64), np.asarray(src, np.int64), np.asarray(dst, np.int64),
            np.asarray(usd, np.float64), np.broadcast_to(np.asarray(fmt, np.int64), (n,)).copy(),
            np.full(n, BENIGN_KINDS.index(kind)), np.full(n, -1), np.full(n, -1),
        )  # fmt: skip

    @classmethod
    def empty(cls) -> Rows:
        return cls(*(np.zeros(0, np.float64 if f.name == "usd" else np.int64) for f in fields(cls)))

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        cols = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        return cls(**cols)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


class Accounts:
    """Growing account table; an account is its index, and we record its bank."""

    def __init__(self) -> None:
        self._bank: list[np.ndarray] = []
        self.size = 0

    def add(self, banks: np.ndarray) -> np.ndarray:
        """Open one account at each of ``banks``; return the new accounts' indices."""
        banks = np.asarray(banks, np.int64)
        self._bank.append(banks)
        self.size += len(banks)
        return np.arange(self.size - len(banks), self.size)

    @property
    def bank(self) -> np.ndarray:
        return np.concatenate(self._bank)


class Recruited:
    """Accounts the world's schemes have used, per bank, in the order they were first used."""

    def __init__(self) -> None:
        self._order: dict[int, list[int]] = {}
        self._seen: set[int] = set()

    def add(self, bank: int, account: int) -> None:
        if account not in self._seen:
            self._seen.add(account)
            self._order.setdefault(bank, []).append(account)

    def pick(self, bank: int, u: float) -> int | None:
        """The account at quantile ``u`` (in [0, 1)) of the bank's list; None if it is empty."""
        pool = self._order.get(bank)
        return pool[int(u * len(pool))] if pool else None


class World:
    """Banks, accounts and calendar of one generated world; flows read from it."""

    def __init__(self, n_banks: int, params: dict[str, Any], seed: int) -> None:
        self.p = params
        self.rng = np.random.default_rng(seed)
        self.n_members = n_banks
        self.n_banks = n_banks + int(params["external_banks"])
        self.days = int(params["days"])
        self.minutes = self.days * 1440
        self.train_end = round(self.minutes * float(params["train_fraction"]))
        # The whole world's period in this object's minutes; a window of it (chunked
        # generation) sees the period from inside, so these then differ from 0 and `minutes`.
        self.period_start, self.period_end = 0, self.minutes
        self.attempt_base = 0  # id of this object's first laundering attempt
        # Accounts schemes have used, per bank, when the world reuses mules (a window
        # shares the whole world's, like its accounts).
        self.recruited = Recruited()
        self._calendar()
        self._banks()
        self.accounts = Accounts()
        self._populate()

    def fixed(self, key: str, draw: Callable[[np.random.Generator], T]) -> T:
        """A draw that describes the world (an employer, a supplier list), not an event.

        The whole world in memory makes it from its one stream, in the order it always
        did; a window of the world (`simulation.world.chunked`) makes it once and reuses it.
        """
        return draw(self.rng)

    def earners(self, salary: Rows) -> np.ndarray:
        """The accounts that may sweep their salary on: those paid in this period."""
        return np.unique(salary.dst)

    def attempt_days(self) -> tuple[float, float]:
        """Days over which training-period and held-out-period attempts are expected."""
        fraction = float(self.p["train_fraction"])
        return self.days * fraction, self.days * (1 - fraction)

    def _calendar(self) -> None:
        self.start = np.datetime64(self.p["start"], "D")
        self.weekday, self.month_start_day = calendar(self.start, self.days)

    def _banks(self) -> None:
        rng, m = self.rng, self.n_members
        self.size_weight = np.arange(1, m + 1, dtype=float) ** -float(self.p["size_skew"])
        self.segment = [SEGMENTS[i % len(SEGMENTS)] for i in rng.permutation(m)]
        self.currency = np.array(
            [CURRENCIES.index(HOME_CURRENCIES[i % len(HOME_CURRENCIES)]) for i in range(m)]
            + [CURRENCIES.index(c) for c in rng.choice(HOME_CURRENCIES, self.n_banks - m)]
        )
        self.allowed = _train_assignment(rng, m, int(self.p["train_typologies_per_bank"]))
        for name, banks in self.p["holdout"].items():
            self.allowed[:, TYPOLOGIES.index(name)] = np.isin(np.arange(1, m + 1), _ints(banks))
        self.mix = _typology_mix(rng, self.allowed, self.p)
        spread = float(self.p["base_rate_spread"])
        self.rate_factor = np.exp(spread * rng.standard_normal(m)) if spread > 0 else np.ones(m)

    def _populate(self) -> None:
        rng, p, m = self.rng, self.p, self.n_members
        persons = np.round(float(p["persons_largest_bank"]) * self.size_weight).astype(int)
        n_ext = self.n_banks - m
        ext = max(1, round(float(p["external_share"]) * persons.sum() / max(n_ext, 1)))
        persons = np.concatenate([persons, np.full(n_ext, ext)])
        corporate = np.array([s == "corporate" for s in self.segment] + [False] * n_ext)
        business = np.round(persons * float(p["business_share"]) * np.where(corporate, 2, 1))
        self.person_start, self.person_count = self._add_by_bank(persons)
        roles = rng.choice([MERCHANT, COMPANY, UTILITY], int(business.sum()), p=[0.45, 0.45, 0.1])
        banks = np.repeat(np.arange(self.n_banks), business.astype(int))
        self.business = self.accounts.add(banks)
        self.business_role = roles
        self.exchange = self.accounts.add(np.arange(m, self.n_banks)[:2])
        self.platform = self.accounts.add(np.arange(m))
        self.escrow = self.accounts.add(np.arange(m))
        late = rng.random(self.accounts.size) < float(p["new_account_share"])
        self.opened = np.where(late, rng.integers(0, self.minutes, self.accounts.size), 0)
        wealthy = np.array([s == "private" for s in self.segment] + [False] * n_ext)
        self.person_wealth = np.repeat(np.where(wealthy, 3.0, 1.0), persons)

    def _add_by_bank(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = self.accounts.add(np.repeat(np.arange(self.n_banks), counts))[0]
        return first + np.concatenate([[0], np.cumsum(counts)[:-1]]), counts

    @property
    def persons(self) -> np.ndarray:
        return np.arange(self.person_start[0], self.person_start[-1] + self.person_count[-1])

    def businesses(self, role: int) -> np.ndarray:
        return self.business[self.business_role == role]

    def existing_person(self, banks: np.ndarray) -> np.ndarray:
        u = self.rng.random(len(banks))
        return self.person_start[banks] + (u * self.person_count[banks]).astype(np.int64)

    def times(self, n: int, profile: str, weekdays_only: bool = False) -> np.ndarray:
        day_w = np.where(self.weekday >= 5, 0.0 if weekdays_only else 1.25, 1.0)
        day = self.rng.choice(self.days, n, p=day_w / day_w.sum())
        return self.at(day, self.hours(n, profile))

    def hours(self, n: int, profile: str) -> np.ndarray:
        return hours_of(self.rng, n, profile)

    def at(self, day: np.ndarray, hour: np.ndarray) -> np.ndarray:
        return day * 1440 + hour * 60 + self.rng.integers(0, 60, len(day))

    def lognormal(self, median: float, sigma: float, n: int) -> np.ndarray:
        return lognormal_of(self.rng, median, sigma, n)


def calendar(start: np.datetime64, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Weekday (Monday = 0) of each of ``days`` days from ``start``, and the day number
    (from ``start``, possibly negative) of the first of each month they touch."""
    day_numbers = (start + np.arange(days)).astype(np.int64)
    weekday = (day_numbers + 3) % 7  # 1970-01-01 was a Thursday
    months = np.arange(start.astype("datetime64[M]"), (start + days).astype("datetime64[M]") + 1)
    return weekday, (months.astype("datetime64[D]") - start).astype(np.int64)


def hours_of(rng: np.random.Generator, n: int, profile: str) -> np.ndarray:
    """``n`` hours of the day drawn from one of the `HOUR_W` activity profiles."""
    w = np.asarray(HOUR_W[profile], float)
    return rng.choice(24, n, p=w / w.sum())


def lognormal_of(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return rng.lognormal(math.log(median), sigma, n)


def _train_assignment(rng: np.random.Generator, n_members: int, per_bank: int) -> np.ndarray:
    """Boolean (bank x typology) matrix of the typologies each bank meets while training.

    Banks take consecutive windows of a seeded typology order, wide enough that every
    typology is met by some bank; with 4 banks and 8 typologies each bank misses six.
    ``per_bank = 0`` allows every typology everywhere (the Dirichlet mix then decides).
    """
    n_typ = len(TYPOLOGIES)
    if per_bank <= 0:
        return np.ones((n_members, n_typ), bool)
    width = min(n_typ, max(per_bank, math.ceil(n_typ / n_members)))
    order = rng.permutation(n_typ)
    allowed = np.zeros((n_members, n_typ), bool)
    for bank in range(n_members):
        first = (bank * n_typ) // n_members
        allowed[bank, order[(first + np.arange(width)) % n_typ]] = True
    return allowed


def _typology_mix(rng: np.random.Generator, allowed: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Each bank's probabilities over typologies for its training-period attempts.

    Drawn from Dirichlet(``typology_alpha``) (small alpha: each bank meets few typologies)
    or even when alpha is 0, then restricted to the allowed typologies. A holdout bank
    gets at least an even share of its holdout typology, so it really learns it.
    """
    n_members, n_typ = allowed.shape
    alpha = float(p["typology_alpha"])
    mix = rng.dirichlet(np.full(n_typ, alpha), n_members) if alpha > 0 else np.ones(allowed.shape)
    for name in p["holdout"]:
        k = TYPOLOGIES.index(name)
        mix[:, k] = np.where(allowed[:, k], np.maximum(mix[:, k], 1 / n_typ), 0)
    mix = np.where(allowed, mix + 1e-12, 0.0)  # +eps: an allowed typology is never impossible
    total = mix.sum(axis=1, keepdims=True)
    return np.divide(mix, total, out=np.zeros_like(mix), where=total > 0)


def _ints(bank_ids: Any) -> list[int]:
    return [int(b) for b in bank_ids]


def categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows x categories) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    return np.minimum((cum < rng.random(len(probs))[:, None] * cum[:, -1:]).sum(axis=1),
                      probs.shape[1] - 1)  # fmt: skip


def note_unit(w: World, who: np.ndarray) -> np.ndarray:
    """1 for most currencies, 100 for yen: keeps cash amounts round in local money."""
    per_usd = np.array([UNITS_PER_USD[c] for c in CURRENCIES])[w.currency[w.accounts.bank[who]]]
    return 10.0 ** np.maximum(0, np.round(np.log10(per_usd)))


def local_to_usd(w: World, local: np.ndarray, who: np.ndarray) -> np.ndarray:
    per_usd = np.array([UNITS_PER_USD[c] for c in CURRENCIES])
    return local / per_usd[w.currency[w.accounts.bank[who]]]
