"""Seeded, vectorised multi-bank synthetic transactions in the IBM AML CSV schema."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

IBM_HEADER = [
    "Timestamp", "From Bank", "Account", "To Bank", "Account", "Amount Received",
    "Receiving Currency", "Amount Paid", "Payment Currency", "Payment Format", "Is Laundering",
]  # fmt: skip
EXTRA_HEADER = ["Attempt ID", "Typology", "Kind"]
FORMATS = ["Cheque", "Credit Card", "ACH", "Cash", "Reinvestment", "Wire", "Bitcoin"]
TYPOLOGIES = [
    "fan_out", "fan_in", "cycle", "structuring", "pass_through", "scatter_gather",
    "gather_scatter", "account_takeover",
]  # fmt: skip
BENIGN_KINDS = [
    "card", "salary", "savings_sweep", "bill", "cash", "merchant_cash", "b2b",
    "reinvestment", "crypto", "payout", "escrow",
]  # fmt: skip
SEGMENTS = ["retail", "corporate", "private", "crypto"]
HOME_CURRENCIES = [
    "US Dollar", "Euro", "US Dollar", "UK Pound", "Canadian Dollar", "Swiss Franc",
    "Yen", "Australian Dollar",
]  # fmt: skip
# Fixed rates (units of currency per US dollar); only their ratios matter.
UNITS_PER_USD = {
    "US Dollar": 1.0, "Euro": 0.95, "UK Pound": 0.82, "Canadian Dollar": 1.35,
    "Swiss Franc": 0.9, "Yen": 140.0, "Australian Dollar": 1.5, "Bitcoin": 5e-5,
}  # fmt: skip
CURRENCIES = list(UNITS_PER_USD)
REPORTING_THRESHOLD = 10_000.0
MANIFEST_FORMAT = "consortium-synth/1"
FIRST_EXTERNAL_BANK = 101

_TINY: dict[str, Any] = {
    "banks": 4,  # member banks when generate_world is not told n_banks
    "start": "2022-09-01",
    "days": 56,
    "persons_largest_bank": 1100,  # the other members shrink by (rank ** -size_skew)
    "size_skew": 0.45,  # Zipf exponent of bank sizes: 0 = equal banks
    "business_share": 0.08,  # businesses per person (doubled at corporate banks)
    "external_banks": 6,  # non-member banks: counterparties nobody in the consortium sees
    "external_share": 0.3,  # their accounts, relative to all members' accounts
    "card_rate": 0.22,  # card payments per person per day
    "cash_rate": 0.04,
    "employment_rate": 0.85,
    "sweep_share": 0.12,  # share of earners who move part of their salary on (hard negative)
    "new_account_share": 0.15,  # accounts opened during the period, so benign ones look new too
    "payouts_per_day": 8.0,  # a platform's weekday payouts to many, often new, payees
    "escrow_per_day": 3.0,  # deposits an escrow agent collects per weekday from new payers
    "bills_min": 1,
    "bills_max": 3,
    "b2b_rate": 0.5,  # supplier payments per business per weekday
    "merchant_cash_rate": 0.25,  # cash deposits per merchant per weekday
    "crypto_rate": 0.03,  # crypto purchases per person per day at crypto-friendly banks
    "attempts_per_day": 2.4,  # laundering attempts per day, whole world
    "cross_bank_share": 0.55,  # chance a scheme's counterparty banks elsewhere (all schemes
    # scale their cross-bank chance with it; 0.55 is the reference level)
    "fresh_mule_share": 0.3,  # chance an involved account is a new account
    "train_fraction": 0.6,
    "train_typologies_per_bank": 2,  # typologies a bank meets while training; 0 = all
    "typology_alpha": 0.0,  # Dirichlet alpha of each bank's training typology mix; 0 = even
    "base_rate_spread": 0.0,  # sigma of a log-normal factor on each bank's laundering rate
    "holdout": {},  # typology -> member bank ids that alone meet it in the training period
}
_SMALL: dict[str, Any] = {
    **_TINY,
    "banks": 20,
    "days": 91,
    "persons_largest_bank": 11500,
    "size_skew": 0.8,
    "external_banks": 12,
    "attempts_per_day": 12.0,
    "train_typologies_per_bank": 0,
    "typology_alpha": 0.2,
    "base_rate_spread": 0.5,
    # Structuring and scatter-gather look unlike the other schemes, so a bank that never
    # met them cannot guess them; cycles share the generic signs (fresh mules, large sums).
    "holdout": {"structuring": ["2"], "scatter_gather": ["3", "6"], "cycle": ["4"]},
}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    "demo": {**_TINY, "days": 70, "persons_largest_bank": 1200},
    # About 20 banks and 2M transactions, with two holdout typologies.
    "small": _SMALL,
    # Near IBM's HI-Small (about 5M transactions, 30 banks).
    "hi-small": {
        **_SMALL,
        "banks": 30,
        "days": 120,
        "persons_largest_bank": 19500,
        "external_banks": 16,
        "attempts_per_day": 16.0,
        "holdout": {
            "structuring": ["2"],
            "scatter_gather": ["3", "6"],
            "cycle": ["4"],
            "account_takeover": ["5"],
        },
    },
}

_MERCHANT, _COMPANY, _UTILITY = range(3)  # roles of business accounts
_HOUR_W = {  # relative activity by hour of day
    "card": [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 11, 13, 16, 14, 12, 11, 12, 15, 17, 16, 13, 9, 5, 2],
    "office": [0, 0, 0, 0, 0, 0, 0, 1, 5, 9, 10, 10, 8, 9, 10, 10, 9, 6, 2, 0, 0, 0, 0, 0],
    "bills": [2, 6, 8, 4, 1, 1, 1, 2, 3, 4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2],
    "launder": [2, 2, 2, 2, 2, 2, 3, 4, 7, 9, 10, 10, 9, 9, 10, 10, 9, 7, 5, 4, 3, 3, 2, 2],
    "night": [9, 10, 10, 9, 8, 6, 4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 4, 5, 6, 8],
}
_LAUNDER_FORMAT_P = {"ACH": 0.45, "Wire": 0.3, "Cheque": 0.08, "Credit Card": 0.05, "Bitcoin": 0.12}


@dataclass
class _Rows:
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
    def benign(cls, t: Any, src: Any, dst: Any, usd: Any, fmt: Any, kind: str) -> _Rows:
        n = len(t)
        return cls(
            np.asarray(t, np.int64), np.asarray(src, np.int64), np.asarray(dst, np.int64),
            np.asarray(usd, np.float64), np.broadcast_to(np.asarray(fmt, np.int64), (n,)).copy(),
            np.full(n, BENIGN_KINDS.index(kind)), np.full(n, -1), np.full(n, -1),
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: list[_Rows]) -> _Rows:
        cols = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        return cls(**cols)

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


class _Accounts:
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


class _World:
    """Banks, accounts and calendar of one generated world; flows read from it."""

    def __init__(self, n_banks: int, params: dict[str, Any], seed: int) -> None:
        self.p = params
        self.rng = np.random.default_rng(seed)
        self.n_members = n_banks
        self.n_banks = n_banks + int(params["external_banks"])
        self.days = int(params["days"])
        self.minutes = self.days * 1440
        self.train_end = round(self.minutes * float(params["train_fraction"]))
        self._calendar()
        self._banks()
        self.accounts = _Accounts()
        self._populate()

    def _calendar(self) -> None:
        start = np.datetime64(self.p["start"], "D")
        self.start = start
        day_numbers = (start + np.arange(self.days)).astype(np.int64)
        self.weekday = (day_numbers + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        months = np.arange(
            start.astype("datetime64[M]"), (start + self.days).astype("datetime64[M]") + 1
        )
        self.month_start_day = (months.astype("datetime64[D]") - start).astype(np.int64)

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
        roles = rng.choice(
            [_MERCHANT, _COMPANY, _UTILITY], int(business.sum()), p=[0.45, 0.45, 0.1]
        )
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
        w = np.asarray(_HOUR_W[profile], float)
        return self.rng.choice(24, n, p=w / w.sum())

    def at(self, day: np.ndarray, hour: np.ndarray) -> np.ndarray:
        return day * 1440 + hour * 60 + self.rng.integers(0, 60, len(day))

    def lognormal(self, median: float, sigma: float, n: int) -> np.ndarray:
        return self.rng.lognormal(math.log(median), sigma, n)


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


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows x categories) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    return np.minimum((cum < rng.random(len(probs))[:, None] * cum[:, -1:]).sum(axis=1),
                      probs.shape[1] - 1)  # fmt: skip


# --- benign flows -------------------------------------------------------------------------


def _card_spend(w: _World) -> _Rows:
    persons, merchants = w.persons, w.businesses(_MERCHANT)
    n = w.rng.poisson(float(w.p["card_rate"]) * len(persons) * w.days)
    payer = w.rng.choice(persons, n)
    merchant = _popular(w, merchants, n)
    bank = w.accounts.bank
    local = w.rng.random(n) < 0.6  # most shopping is with merchants banking nearby
    for b in range(w.n_banks):
        here = local & (bank[payer] == b)
        pool = merchants[bank[merchants] == b]
        if len(pool):
            merchant[here] = _popular(w, pool, int(here.sum()))
    usd = w.lognormal(35, 1.0, n) * w.person_wealth[payer - persons[0]]
    return _Rows.benign(
        w.times(n, "card"), payer, merchant, usd, FORMATS.index("Credit Card"), "card"
    )


def _popular(w: _World, merchants: np.ndarray, n: int) -> np.ndarray:
    """Zipf-popular merchants: a few big ones receive most payments (a benign fan-in)."""
    popularity = 1.0 / np.arange(1, len(merchants) + 1) ** 1.1
    return w.rng.permutation(merchants)[
        w.rng.choice(len(merchants), n, p=popularity / popularity.sum())
    ]


def _payroll(w: _World) -> tuple[_Rows, _Rows]:
    """Monthly salaries paid by each employer within one hour (a benign fan-out)."""
    rng, persons, companies = w.rng, w.persons, w.businesses(_COMPANY)
    staff = persons[rng.random(len(persons)) < float(w.p["employment_rate"])]
    employer = _employer_for(w, staff, companies)
    payday = rng.choice([1, 15, 25, 28], len(companies))[np.searchsorted(companies, employer)]
    hour = rng.integers(6, 9, len(companies))[np.searchsorted(companies, employer)]
    salary = w.lognormal(3200, 0.45, len(staff)) * w.person_wealth[staff - persons[0]]
    n_months = len(w.month_start_day)
    day = (w.month_start_day[:, None] + payday[None, :] - 1).ravel()
    t = w.at(day, np.tile(hour, n_months))
    who = np.tile(np.arange(len(staff)), n_months)
    keep = (t >= 0) & (t < w.minutes)
    t, who = t[keep], who[keep]
    usd = salary[who] * rng.uniform(0.98, 1.02, len(who))
    rows = _Rows.benign(
        t, np.tile(employer, n_months)[keep], staff[who], usd, FORMATS.index("ACH"), "salary"
    )
    return rows, _savings_sweep(w, rows)


def _employer_for(w: _World, staff: np.ndarray, companies: np.ndarray) -> np.ndarray:
    bank = w.accounts.bank
    anywhere = w.rng.choice(companies, len(staff))
    local = np.empty(len(staff), np.int64)
    for b in range(w.n_banks):  # one pass per bank: employers are mostly local
        here, pool = bank[staff] == b, companies[bank[companies] == b]
        local[here] = w.rng.choice(pool, here.sum()) if len(pool) else anywhere[here]
    return np.where(w.rng.random(len(staff)) < 0.7, local, anywhere)


def _savings_sweep(w: _World, salary: _Rows) -> _Rows:
    """Some earners move most of their salary to their own account elsewhere within hours."""
    rng = w.rng
    earners = np.unique(salary.dst)
    savers = earners[rng.random(len(earners)) < float(w.p["sweep_share"])]
    pocket = rng.choice(w.persons, len(savers))  # their own account, anywhere
    pick = np.flatnonzero(np.isin(salary.dst, savers) & (rng.random(len(salary.dst)) < 0.8))
    src = salary.dst[pick]
    dst = pocket[np.searchsorted(savers, src)]
    t = salary.t[pick] + rng.integers(30, 480, len(pick))
    keep = t < w.minutes
    fmt = rng.choice([FORMATS.index("ACH"), FORMATS.index("Wire")], len(pick))
    usd = salary.usd[pick] * rng.uniform(0.5, 0.95, len(pick))
    return _Rows.benign(t[keep], src[keep], dst[keep], usd[keep], fmt[keep], "savings_sweep")


def _bills(w: _World) -> _Rows:
    rng, persons, utilities = w.rng, w.persons, w.businesses(_UTILITY)
    per = rng.integers(int(w.p["bills_min"]), int(w.p["bills_max"]) + 1, len(persons))
    payer = np.repeat(persons, per)
    n = len(payer)
    payee, dom, hour = rng.choice(utilities, n), rng.integers(1, 29, n), w.hours(n, "bills")
    usd = w.lognormal(120, 0.9, n) * w.person_wealth[payer - persons[0]]
    fmt = rng.choice(
        [FORMATS.index(f) for f in ("ACH", "Cheque", "Credit Card")], n, p=[0.75, 0.1, 0.15]
    )
    n_months = len(w.month_start_day)
    day = (w.month_start_day[:, None] + dom[None, :] - 1).ravel()
    t = w.at(day, np.tile(hour, n_months))
    idx = np.tile(np.arange(n), n_months)
    keep = (t >= 0) & (t < w.minutes)
    idx, t = idx[keep], t[keep]
    usd_t = usd[idx] * rng.uniform(0.85, 1.15, len(idx))
    return _Rows.benign(t, payer[idx], payee[idx], usd_t, fmt[idx], "bill")


def _cash(w: _World) -> _Rows:
    """Round cash withdrawals by persons (self-transactions, as in the IBM data)."""
    persons = w.persons
    n = w.rng.poisson(float(w.p["cash_rate"]) * len(persons) * w.days)
    who = w.rng.choice(persons, n)
    notes = w.rng.integers(1, 26, n) * 20.0
    usd = _local_to_usd(w, notes * _note_unit(w, who), who)
    return _Rows.benign(w.times(n, "card"), who, who, usd, FORMATS.index("Cash"), "cash")


def _merchant_cash(w: _World) -> _Rows:
    """Merchants' takings; some land just under the threshold (hard negatives)."""
    merchants = w.businesses(_MERCHANT)
    weekdays = int((w.weekday < 5).sum())
    n = w.rng.poisson(float(w.p["merchant_cash_rate"]) * len(merchants) * weekdays)
    who = w.rng.choice(merchants, n)
    local = np.round(w.lognormal(2500, 0.8, n) * _note_unit(w, who) / 10) * 10
    usd = _local_to_usd(w, local, who)
    return _Rows.benign(
        w.times(n, "office", True), who, who, usd, FORMATS.index("Cash"), "merchant_cash"
    )


def _b2b(w: _World) -> _Rows:
    rng, business = w.rng, w.business
    suppliers = rng.choice(business, (len(business), 4))  # regular suppliers, not new ones
    weekdays = int((w.weekday < 5).sum())
    n = rng.poisson(float(w.p["b2b_rate"]) * len(business) * weekdays)
    payer = rng.integers(0, len(business), n)
    payee = suppliers[payer, rng.integers(0, 4, n)]
    fmt = rng.choice([FORMATS.index(f) for f in ("Wire", "ACH", "Cheque")], n, p=[0.35, 0.45, 0.2])
    usd = w.lognormal(2500, 1.2, n)
    return _Rows.benign(w.times(n, "office", True), business[payer], payee, usd, fmt, "b2b")


def _reinvestment(w: _World) -> _Rows:
    n = w.rng.poisson(0.01 * len(w.business) * w.days)
    who = w.rng.choice(w.business, n)
    usd = w.lognormal(15000, 1.0, n)
    return _Rows.benign(
        w.times(n, "office", True), who, who, usd, FORMATS.index("Reinvestment"), "reinvestment"
    )


def _crypto(w: _World) -> _Rows:
    """Crypto purchases and sales, mostly by customers of crypto-friendly banks."""
    bank_rate = np.array(
        [1.0 if s == "crypto" else 0.1 for s in w.segment] + [0.1] * (w.n_banks - w.n_members)
    )
    persons = w.persons
    rate = bank_rate[w.accounts.bank[persons]]
    n = w.rng.poisson(float(w.p["crypto_rate"]) * rate.sum() * w.days)
    who = w.rng.choice(persons, n, p=rate / rate.sum())
    venue = w.rng.choice(w.exchange, n)
    sell = w.rng.random(n) < 0.35
    src, dst = np.where(sell, venue, who), np.where(sell, who, venue)
    usd = w.lognormal(300, 1.0, n)
    return _Rows.benign(w.times(n, "card"), src, dst, usd, FORMATS.index("Bitcoin"), "crypto")


def _payouts(w: _World) -> _Rows:
    """Platforms pay many sellers each weekday in one batch: a benign fan-out to new payees."""
    rng = w.rng
    days = np.flatnonzero(w.weekday < 5)
    per = rng.poisson(float(w.p["payouts_per_day"]), (len(w.platform), len(days)))
    payer = np.repeat(np.repeat(w.platform, len(days)), per.ravel())
    hour = np.repeat(np.tile(rng.integers(9, 17, len(days)), len(w.platform)), per.ravel())
    day = np.repeat(np.tile(days, len(w.platform)), per.ravel())
    payee = rng.choice(w.persons, len(payer))
    usd = w.lognormal(400, 0.8, len(payer))
    return _Rows.benign(w.at(day, hour), payer, payee, usd, FORMATS.index("ACH"), "payout")


def _escrow(w: _World) -> _Rows:
    """Escrow agents collect deposits from one-off payers: a benign fan-in of transfers."""
    rng = w.rng
    days = np.flatnonzero(w.weekday < 5)
    per = rng.poisson(float(w.p["escrow_per_day"]), (len(w.escrow), len(days)))
    payee = np.repeat(np.repeat(w.escrow, len(days)), per.ravel())
    day = np.repeat(np.tile(days, len(w.escrow)), per.ravel())
    payer = rng.choice(w.persons, len(payee))
    usd = w.lognormal(4000, 0.6, len(payee))
    fmt = rng.choice([FORMATS.index("Wire"), FORMATS.index("ACH")], len(payee))
    return _Rows.benign(w.at(day, w.hours(len(day), "office")), payer, payee, usd, fmt, "escrow")


def _note_unit(w: _World, who: np.ndarray) -> np.ndarray:
    """1 for most currencies, 100 for yen: keeps cash amounts round in local money."""
    per_usd = np.array([UNITS_PER_USD[c] for c in CURRENCIES])[w.currency[w.accounts.bank[who]]]
    return 10.0 ** np.maximum(0, np.round(np.log10(per_usd)))


def _local_to_usd(w: _World, local: np.ndarray, who: np.ndarray) -> np.ndarray:
    per_usd = np.array([UNITS_PER_USD[c] for c in CURRENCIES])
    return local / per_usd[w.currency[w.accounts.bank[who]]]


# --- laundering -------------------------------------------------------------------------


@dataclass
class _Attempts:
    """Laundering attempts of one typology: home bank and period of each."""

    ids: np.ndarray
    home: np.ndarray
    train: np.ndarray
    typology: int


def _draw_attempts(w: _World) -> list[_Attempts]:
    """Attempts' home banks (by size and rate factor) and typologies.

    Training-period attempts follow the home bank's typology mix; held-out-period ones
    are even over all typologies, so every bank meets every typology when evaluated.
    """
    rng, m = w.rng, w.n_members
    rate = float(w.p["attempts_per_day"])
    n_train = rng.poisson(rate * w.days * float(w.p["train_fraction"]))
    n_test = rng.poisson(rate * w.days * (1 - float(w.p["train_fraction"])))
    weight = w.size_weight * w.rate_factor
    train_weight = weight * (w.mix.sum(axis=1) > 0)  # a bank allowed nothing launders nothing
    home = np.concatenate([
        rng.choice(m, n_train, p=train_weight / train_weight.sum()),
        rng.choice(m, n_test, p=weight / weight.sum()),
    ])  # fmt: skip
    train = np.arange(n_train + n_test) < n_train
    typ = rng.integers(0, len(TYPOLOGIES), n_train + n_test)
    typ[:n_train] = _categorical(rng, w.mix[home[:n_train]])
    ids = np.arange(n_train + n_test)
    return [
        _Attempts(ids[typ == k], home[typ == k], train[typ == k], k) for k in range(len(TYPOLOGIES))
    ]


def _counterparties(w: _World, att: _Attempts, per: np.ndarray, cross: float) -> np.ndarray:
    """Accounts joining each attempt (`per` of them), at banks allowed for its period.

    In the training period a typology may only touch members that meet it while
    training (or outside banks), so a bank that misses it truly never sees it.
    """
    rng, m = w.rng, w.n_members
    home, train = np.repeat(att.home, per), np.repeat(att.train, per)
    n = len(home)
    member_ok = np.where(train[:, None], w.allowed[:, att.typology][None, :], True)
    member_ok &= np.arange(m)[None, :] != home[:, None]
    n_ext = w.n_banks - m
    ext_w = np.full((n, n_ext), max(1.0, member_ok.sum(1).max()) / max(n_ext, 1))
    weight = np.concatenate([member_ok.astype(float), ext_w], axis=1)
    cum = np.cumsum(weight, axis=1)
    other = (cum < rng.random(n)[:, None] * cum[:, -1:]).sum(axis=1)
    bank = np.where(rng.random(n) < cross, other, home)
    return _mule_or_customer(w, bank)


def _mule_or_customer(w: _World, bank: np.ndarray) -> np.ndarray:
    fresh = w.rng.random(len(bank)) < float(w.p["fresh_mule_share"])
    new = w.accounts.add(bank[fresh])
    out = w.existing_person(bank)
    out[fresh] = new
    return out


def _cross(w: _World, typical: float | None = None) -> float:
    """A scheme's chance per counterparty of banking elsewhere, scaled by the world's knob."""
    share = float(w.p["cross_bank_share"])
    return share if typical is None else min(1.0, typical * share / 0.55)


def _rows_for(
    att: _Attempts, per: np.ndarray, src: Any, dst: Any, offset: Any, usd: Any, fmt: Any
) -> _Rows:
    n = int(per.sum())
    typ = np.full(n, att.typology)
    kind = len(BENIGN_KINDS) + typ
    return _Rows(
        np.asarray(offset, np.int64), np.asarray(src, np.int64), np.asarray(dst, np.int64),
        np.asarray(usd, float), np.asarray(fmt, np.int64), kind, np.repeat(att.ids, per), typ,
    )  # fmt: skip


def _launder_format(w: _World, n: int) -> np.ndarray:
    names = list(_LAUNDER_FORMAT_P)
    return np.array([FORMATS.index(f) for f in names])[
        w.rng.choice(len(names), n, p=list(_LAUNDER_FORMAT_P.values()))
    ]


def _start_of_day(w: _World, n: int) -> np.ndarray:
    """Time of day (minutes) at which each attempt begins."""
    return w.hours(n, "launder") * 60 + w.rng.integers(0, 60, n)


def _fan(w: _World, att: _Attempts, inward: bool) -> _Rows:
    """One hub pays (fan-out) or is paid by (fan-in) 5-10 accounts within a day or so."""
    rng, n = w.rng, len(att.ids)
    per = rng.integers(5, 11, n)
    hub = _mule_or_customer(w, att.home)
    others = _counterparties(w, att, per, _cross(w))
    span = rng.integers(60, 36 * 60, n)
    offset = np.repeat(_start_of_day(w, n), per) + (
        rng.random(per.sum()) * np.repeat(span, per)
    ).astype(int)
    usd = np.repeat(w.lognormal(3000, 0.7, n), per) * rng.uniform(0.85, 1.15, per.sum())
    hubs = np.repeat(hub, per)
    src, dst = (others, hubs) if inward else (hubs, others)
    return _rows_for(att, per, src, dst, offset, usd, np.repeat(_launder_format(w, n), per))


def _cycle(w: _World, att: _Attempts) -> _Rows:
    """Money goes round k accounts, mostly at different banks, and comes back shrunk."""
    rng, n = w.rng, len(att.ids)
    per = rng.integers(3, 7, n)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    ring = _counterparties(w, att, per, _cross(w, 0.85))
    ring[first] = _mule_or_customer(w, att.home)
    pos = np.arange(per.sum()) - np.repeat(first, per)
    nxt = np.where(pos + 1 < np.repeat(per, per), np.arange(per.sum()) + 1, np.repeat(first, per))
    hop = rng.integers(30, 12 * 60, per.sum())
    offset = np.repeat(_start_of_day(w, n), per) + _cumsum_within(hop, first, per)
    decay = np.exp(_cumsum_within(np.log(rng.uniform(0.93, 0.99, per.sum())), first, per))
    usd = np.repeat(w.lognormal(15000, 0.6, n), per) * decay
    return _rows_for(att, per, ring, ring[nxt], offset, usd, np.repeat(_launder_format(w, n), per))


def _cumsum_within(x: np.ndarray, first: np.ndarray, per: np.ndarray) -> np.ndarray:
    total = np.cumsum(x)
    before = np.repeat(total[first] - x[first], per)
    return total - before


def _structuring(w: _World, att: _Attempts) -> _Rows:
    """Several payments just under the reporting threshold over a few days."""
    rng, n = w.rng, len(att.ids)
    per = rng.integers(3, 9, n)
    who = np.repeat(_mule_or_customer(w, att.home), per)
    cash = np.repeat(rng.random(n) < 0.5, per)
    payee = _counterparties(w, att, per, _cross(w))
    day = rng.integers(0, 5, per.sum())
    offset = day * 1440 + w.hours(per.sum(), "office") * 60 + rng.integers(0, 60, per.sum())
    local = np.round(
        rng.uniform(REPORTING_THRESHOLD * 0.9, REPORTING_THRESHOLD - 0.01, per.sum()), 2
    )
    wire = rng.choice([FORMATS.index("ACH"), FORMATS.index("Wire")], per.sum())
    fmt = np.where(cash, FORMATS.index("Cash"), wire)
    dst = np.where(cash, who, payee)
    return _rows_for(att, per, who, dst, offset, _local_to_usd(w, local, who), fmt)


def _pass_through(w: _World, att: _Attempts) -> _Rows:
    """A mule receives a sum and sends nearly all of it on within hours."""
    rng, n = w.rng, len(att.ids)
    outs = rng.integers(1, 3, n)
    per = outs + 1
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    mule = np.repeat(_mule_or_customer(w, att.home), per)
    others = _counterparties(w, att, per, _cross(w, 0.8))
    is_in = np.zeros(per.sum(), bool)
    is_in[first] = True
    amount = np.repeat(w.lognormal(9000, 0.7, n), per)
    share = rng.uniform(0.5, 1.0, per.sum())
    share_sum = np.repeat(np.add.reduceat(np.where(is_in, 0, share), first), per)
    usd = np.where(is_in, amount, amount * rng.uniform(0.9, 0.99, per.sum()) * share / share_sum)
    delay = np.where(is_in, 0, rng.integers(15, 6 * 60, per.sum()))
    offset = np.repeat(_start_of_day(w, n), per) + delay
    out_fmt = rng.choice(
        [FORMATS.index(f) for f in ("Wire", "ACH", "Bitcoin")], per.sum(), p=[0.4, 0.4, 0.2]
    )
    fmt = np.where(
        is_in, rng.choice([FORMATS.index("Wire"), FORMATS.index("ACH")], per.sum()), out_fmt
    )
    src, dst = np.where(is_in, others, mule), np.where(is_in, mule, others)
    return _rows_for(att, per, src, dst, offset, usd, fmt)


def _scatter_gather(w: _World, att: _Attempts) -> _Rows:
    """A source splits a sum over mules who each forward their part to one sink."""
    rng, n = w.rng, len(att.ids)
    k = rng.integers(3, 7, n)
    source = np.repeat(_mule_or_customer(w, att.home), k)
    sink = np.repeat(_counterparties(w, att, np.ones(n, np.int64), _cross(w, 0.7)), k)
    mules = _counterparties(w, att, k, _cross(w))
    t1 = np.repeat(_start_of_day(w, n), k) + rng.integers(0, 12 * 60, k.sum())
    t2 = t1 + rng.integers(60, 24 * 60, k.sum())
    leg = np.repeat(w.lognormal(12000, 0.6, n) / k, k) * rng.uniform(0.85, 1.15, k.sum())
    fmt = np.repeat(_launder_format(w, n), k)
    first = _rows_for(att, k, source, mules, t1, leg, fmt)
    second = _rows_for(att, k, mules, sink, t2, leg * rng.uniform(0.95, 0.99, k.sum()), fmt)
    return _Rows.concat([first, second])


def _gather_scatter(w: _World, att: _Attempts) -> _Rows:
    """Several accounts pay one hub, which soon pays (nearly) the sum on to several others."""
    rng, n = w.rng, len(att.ids)
    k_in, k_out = rng.integers(3, 7, n), rng.integers(3, 7, n)
    hub = _mule_or_customer(w, att.home)
    sources = _counterparties(w, att, k_in, _cross(w))
    sinks = _counterparties(w, att, k_out, _cross(w))
    t_in = np.repeat(_start_of_day(w, n), k_in) + rng.integers(0, 12 * 60, k_in.sum())
    gathered = np.maximum.reduceat(t_in, np.concatenate([[0], np.cumsum(k_in)[:-1]]))
    t_out = np.repeat(gathered, k_out) + rng.integers(30, 12 * 60, k_out.sum())
    total = w.lognormal(15000, 0.6, n)
    leg_in = np.repeat(total / k_in, k_in) * rng.uniform(0.85, 1.15, k_in.sum())
    kept = rng.uniform(0.9, 0.98, n)
    leg_out = np.repeat(total * kept / k_out, k_out) * rng.uniform(0.85, 1.15, k_out.sum())
    fmt = _launder_format(w, n)
    gather = _rows_for(att, k_in, sources, np.repeat(hub, k_in), t_in, leg_in,
                       np.repeat(fmt, k_in))  # fmt: skip
    scatter = _rows_for(att, k_out, np.repeat(hub, k_out), sinks, t_out, leg_out,
                        np.repeat(fmt, k_out))  # fmt: skip
    return _Rows.concat([gather, scatter])


def _account_takeover(w: _World, att: _Attempts) -> _Rows:
    """PaySim's fraud: a taken-over customer account TRANSFERs most of its money to a mule,
    who CASHes it OUT within hours (cash withdrawals, or bitcoin bought at an exchange)."""
    rng, n = w.rng, len(att.ids)
    outs = rng.integers(1, 4, n)
    per = outs + 1
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    is_transfer = np.zeros(per.sum(), bool)
    is_transfer[first] = True
    victim = np.repeat(w.existing_person(att.home), per)  # established customers, never new
    mule = np.repeat(_counterparties(w, att, np.ones(n, np.int64), _cross(w, 0.7)), per)
    amount = np.repeat(w.lognormal(7000, 0.8, n), per) * w.person_wealth[victim - w.persons[0]]
    share = rng.uniform(0.5, 1.0, per.sum())
    share_sum = np.repeat(np.add.reduceat(np.where(is_transfer, 0, share), first), per)
    usd = np.where(is_transfer, amount, amount * rng.uniform(0.95, 1.0, per.sum()) * share
                   / share_sum)  # fmt: skip
    delay = _cumsum_within(np.where(is_transfer, 0, rng.integers(5, 180, per.sum())), first, per)
    start = w.hours(n, "night") * 60 + rng.integers(0, 60, n)
    crypto = rng.random(per.sum()) < 0.3
    exchange = rng.choice(w.exchange, per.sum())
    cash_dst = np.where(crypto, exchange, mule)
    cash_fmt = np.where(crypto, FORMATS.index("Bitcoin"), FORMATS.index("Cash"))
    wire = rng.choice([FORMATS.index("Wire"), FORMATS.index("ACH")], per.sum(), p=[0.6, 0.4])
    return _rows_for(
        att, per, np.where(is_transfer, victim, mule), np.where(is_transfer, mule, cash_dst),
        np.repeat(start, per) + delay, usd, np.where(is_transfer, wire, cash_fmt),
    )  # fmt: skip


def _place_in_time(w: _World, rows: _Rows, att: _Attempts) -> _Rows:
    """Turn attempt-relative offsets into absolute times inside each attempt's period."""
    margin = 6 * 60  # keep schemes clear of the train/holdout boundary
    local = np.searchsorted(att.ids, rows.attempt)
    span = np.zeros(len(att.ids), np.int64)
    np.maximum.at(span, local, rows.t)
    lo = np.where(att.train, 0, w.train_end + margin)
    hi = np.where(att.train, w.train_end - margin, w.minutes) - span
    first_day, last_day = -(-lo // 1440), np.maximum(-(-lo // 1440), hi // 1440)
    day = first_day + (w.rng.random(len(att.ids)) * (last_day - first_day)).astype(np.int64)
    rows.t = rows.t + day[local] * 1440
    return rows.take(np.flatnonzero((rows.t >= lo[local]) & (rows.t < w.minutes)))


def _laundering(w: _World) -> _Rows:
    parts = []
    for att in _draw_attempts(w):
        if len(att.ids) == 0:
            continue
        name = TYPOLOGIES[att.typology]
        if name in ("fan_out", "fan_in"):
            rows = _fan(w, att, inward=name == "fan_in")
        else:
            rows = {"cycle": _cycle, "structuring": _structuring, "pass_through": _pass_through,
                    "scatter_gather": _scatter_gather, "gather_scatter": _gather_scatter,
                    "account_takeover": _account_takeover}[name](w, att)  # fmt: skip
        parts.append(_place_in_time(w, rows, att))
    return _Rows.concat(parts)


# --- assembly and output -----------------------------------------------------------------


def _all_rows(w: _World) -> _Rows:
    salary, sweep = _payroll(w)
    parts = [_card_spend(w), salary, sweep, _bills(w), _cash(w), _merchant_cash(w), _b2b(w),
             _reinvestment(w), _crypto(w), _payouts(w), _escrow(w), _laundering(w)]  # fmt: skip
    rows = _Rows.concat(parts)
    member = w.accounts.bank < w.n_members
    visible = member[rows.src] | member[rows.dst]  # nobody in the consortium sees the rest
    opened = np.zeros(w.accounts.size, np.int64)
    opened[: len(w.opened)] = w.opened  # accounts created later (mules) are open when used
    is_open = (rows.t >= opened[rows.src]) & (rows.t >= opened[rows.dst])
    rows = rows.take(np.flatnonzero(visible & (is_open | (rows.attempt >= 0))))
    return rows.take(np.argsort(rows.t, kind="stable"))


def _bank_ids(w: _World) -> np.ndarray:
    members = np.arange(1, w.n_members + 1)
    outside = FIRST_EXTERNAL_BANK + np.arange(w.n_banks - w.n_members)
    return np.concatenate([members, outside]).astype(str)


def _account_names(w: _World) -> np.ndarray:
    """IBM-style account ids: "8", the bank id padded to 3 digits, then the index in hex."""
    ids = _bank_ids(w)
    bank = w.accounts.bank
    return np.char.add("8", np.char.add(np.char.zfill(ids[bank], 3), _hex(np.arange(len(bank)))))


def _table(w: _World, rows: _Rows, account: np.ndarray) -> pd.DataFrame:
    """Format the rows as the CSV's text columns (IBM order, then the extras).

    Called once per bank file: text columns take far more memory than the numeric rows,
    so only one bank's worth of them exists at a time.
    """
    bank = w.accounts.bank
    ids = _bank_ids(w)
    btc = rows.fmt == FORMATS.index("Bitcoin")
    per_usd = np.array([UNITS_PER_USD[c] for c in CURRENCIES])
    pay_cur = np.where(btc, CURRENCIES.index("Bitcoin"), w.currency[bank[rows.src]])
    recv_cur = np.where(btc, CURRENCIES.index("Bitcoin"), w.currency[bank[rows.dst]])
    decimals = np.where(btc, 6, 2)
    paid = _round(rows.usd * per_usd[pay_cur], decimals)
    received = _round(paid * per_usd[recv_cur] / per_usd[pay_cur], decimals)
    stamp = (w.start.astype("datetime64[m]") + rows.t).astype(str)
    label = rows.attempt >= 0
    kinds = np.array(BENIGN_KINDS + TYPOLOGIES)
    return pd.DataFrame({
        "ts": np.char.replace(np.char.replace(stamp, "-", "/"), "T", " "),
        "from_bank": ids[bank[rows.src]], "from_account": account[rows.src],
        "to_bank": ids[bank[rows.dst]], "to_account": account[rows.dst],
        "received": _fmt_amount(received, btc), "recv_cur": np.array(CURRENCIES)[recv_cur],
        "paid": _fmt_amount(paid, btc), "pay_cur": np.array(CURRENCIES)[pay_cur],
        "format": np.array(FORMATS)[rows.fmt], "label": label.astype(int),
        "attempt": np.where(label, _attempt_ids(rows.attempt), ""),
        "typology": np.where(label, np.array(TYPOLOGIES)[np.maximum(rows.typology, 0)], ""),
        "kind": kinds[rows.kind],
    })  # fmt: skip


def _attempt_ids(attempt: np.ndarray) -> np.ndarray:
    return np.char.add("A", np.char.zfill((attempt + 1).astype(str), 6))


def _hex(values: np.ndarray) -> np.ndarray:
    return np.array([f"{v:05X}" for v in values.tolist()])


def _round(x: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    scale = 10.0**decimals
    return np.maximum(np.round(x * scale), 1) / scale  # never a zero amount


def _fmt_amount(x: np.ndarray, btc: np.ndarray) -> np.ndarray:
    text = np.char.mod("%.2f", x).astype(object)
    text[btc] = np.char.mod("%.6f", x[btc])  # bitcoin amounts are small: keep satoshi-ish precision
    return text


def _resolve_params(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    params = dict(PRESETS[preset])
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(f"unknown generator parameters {unknown}; known: {sorted(params)}")
    for key, value in overrides.items():
        expected = type(params[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ValueError(f"parameter {key!r} must be {expected.__name__}, got {value!r}")
        params[key] = value
    if params["days"] < 7 or params["external_banks"] < 1 or not 0 < params["train_fraction"] < 1:
        raise ValueError("need days >= 7, external_banks >= 1 and 0 < train_fraction < 1")
    if params["typology_alpha"] < 0 or params["base_rate_spread"] < 0:
        raise ValueError("typology_alpha and base_rate_spread must not be negative")
    return params


def _check_holdout(holdout: dict[str, Any], n_banks: int) -> dict[str, list[str]]:
    """Validate ``{typology: [member bank ids]}`` and return it with string ids, sorted."""
    out = {}
    for name, banks in holdout.items():
        if name not in TYPOLOGIES:
            raise ValueError(f"holdout typology {name!r} unknown; choose from {TYPOLOGIES}")
        ids = [str(b) for b in ([banks] if isinstance(banks, str | int) else banks)]
        bad = [b for b in ids if not (b.isdigit() and 1 <= int(b) <= n_banks)]
        if bad:
            raise ValueError(f"holdout {name!r}: {bad} are not member banks 1..{n_banks}")
        out[name] = sorted(set(ids), key=int)
    return dict(sorted(out.items()))


def _bank_summary(w: _World, rows: _Rows, mine: np.ndarray, index: int) -> dict[str, Any]:
    typology, in_train = rows.typology[mine], rows.t[mine] < w.train_end

    def count(part: np.ndarray) -> dict[str, int]:
        return {t: int(((typology == k) & part).sum()) for k, t in enumerate(TYPOLOGIES)}

    return {
        "file": f"bank_{_bank_ids(w)[index]}.csv",
        "rows": int(mine.sum()),
        "laundering_rows": int((typology >= 0).sum()),
        "segment": w.segment[index],
        "currency": CURRENCIES[w.currency[index]],
        "rate_factor": round(float(w.rate_factor[index]), 6),
        "train_mix": {t: round(float(w.mix[index, k]), 6) for k, t in enumerate(TYPOLOGIES)},
        "train_typologies": [t for k, t in enumerate(TYPOLOGIES) if w.allowed[index, k]],
        "typology_rows": count(np.ones_like(in_train)),
        "typology_rows_train": count(in_train),
        "typology_rows_holdout": count(~in_train),
    }


def _stamp(w: _World, minute: int) -> str:
    text = str(w.start.astype("datetime64[m]") + minute)
    return text.replace("-", "/").replace("T", " ")


def generate_world(
    out_dir: Path | str,
    *,
    n_banks: int | None = None,
    preset: str = "tiny",
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """Write one IBM-format CSV per member bank plus ``manifest.json``; return the manifest.

    A bank's file holds every row where it is the sending or the receiving bank, in
    time order. The first ``train_fraction`` of the period (ending at the manifest's
    ``train_end``) shows each bank only its ``train_typologies``; afterwards every
    typology occurs everywhere. The same arguments always give byte-identical files.

    Parameters
    ----------
    out_dir : created if missing; existing ``bank_*.csv`` files of the same ids are replaced.
    n_banks : number of member banks (ids ``"1"`` .. ``str(n_banks)``, ``"1"`` the largest);
        default the preset's ``banks``.
    preset : a key of `PRESETS`; ``overrides`` replace single preset values, e.g.
        ``holdout={"cycle": ["1"], "account_takeover": ["2"]}`` (those typologies occur in
        the training period only at the named banks), ``typology_alpha=0.3`` (each bank's
        training typology mix ~ Dirichlet(0.3)), ``size_skew`` (Zipf exponent of bank
        sizes), ``base_rate_spread``, ``cross_bank_share``.
    """
    params = _resolve_params(preset, overrides)
    n_banks = int(params["banks"]) if n_banks is None else n_banks
    if n_banks < 1:
        raise ValueError("n_banks must be at least 1")
    params["banks"] = n_banks
    params["holdout"] = _check_holdout(params["holdout"], n_banks)
    world = _World(n_banks, params, seed)
    rows = _all_rows(world)
    account = _account_names(world)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bank = world.accounts.bank
    banks = {}
    for index, bank_id in enumerate(_bank_ids(world)[:n_banks].tolist()):
        mine = (bank[rows.src] == index) | (bank[rows.dst] == index)
        banks[bank_id] = _bank_summary(world, rows, mine, index)
        header = IBM_HEADER + EXTRA_HEADER
        table = _table(world, rows.take(np.flatnonzero(mine)), account)
        table.to_csv(
            out_dir / banks[bank_id]["file"], index=False, header=header, lineterminator="\n"
        )
        del table
    manifest = _manifest(world, rows, preset, seed, params, banks)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def _manifest(
    w: _World, rows: _Rows, preset: str, seed: int, params: dict[str, Any], banks: dict[str, Any]
) -> dict[str, Any]:
    attempts = {
        t: len(np.unique(rows.attempt[rows.typology == k])) for k, t in enumerate(TYPOLOGIES)
    }
    train_banks = {
        t: [b for b, info in banks.items() if info["typology_rows_train"][t]] for t in TYPOLOGIES
    }
    return {
        "format": MANIFEST_FORMAT,
        "seed": seed,
        "preset": preset,
        "n_banks": w.n_members,
        "params": params,
        "start": _stamp(w, 0),
        "end": _stamp(w, w.minutes),
        "train_end": _stamp(w, w.train_end),
        "typologies": list(TYPOLOGIES),
        "holdout": params["holdout"],
        "train_banks": train_banks,  # which member banks saw each typology while training
        "reporting_threshold": REPORTING_THRESHOLD,
        "banks": banks,
        "totals": {
            "rows": len(rows.t),
            "laundering_rows": int((rows.attempt >= 0).sum()),
            "attempts": attempts,
        },
    }
