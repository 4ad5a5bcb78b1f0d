"""Benign flows: card spend, payroll, bills, cash, business and platform payments."""

from __future__ import annotations

import numpy as np

from simulation.world.banks import Rows, World, hours_of, local_to_usd, lognormal_of, note_unit
from simulation.world.presets import COMPANY, FORMATS, MERCHANT, UTILITY

JOBS = "jobs"  # the fixed draw of who works where (its first item: the employees)


def benign_flows(w: World) -> list[Rows]:
    """Every benign flow of the world, in the order the seeded draws were always made."""
    salary, sweep = _payroll(w)
    return [_card_spend(w), salary, sweep, _bills(w), _cash(w), _merchant_cash(w), _b2b(w),
            _reinvestment(w), _crypto(w), _payouts(w), _escrow(w)]  # fmt: skip


def _card_spend(w: World) -> Rows:
    persons, merchants = w.persons, w.businesses(MERCHANT)
    n = w.rng.poisson(float(w.p["card_rate"]) * len(persons) * w.days)
    payer = w.rng.choice(persons, n)
    merchant = _popular(w, merchants, n, "popular")
    bank = w.accounts.bank
    local = w.rng.random(n) < 0.6  # most shopping is with merchants banking nearby
    for b in range(w.n_banks):
        here = local & (bank[payer] == b)
        pool = merchants[bank[merchants] == b]
        if len(pool):
            merchant[here] = _popular(w, pool, int(here.sum()), f"popular at {b}")
    usd = w.lognormal(35, 1.0, n) * w.person_wealth[payer - persons[0]]
    return Rows.benign(
        w.times(n, "card"), payer, merchant, usd, FORMATS.index("Credit Card"), "card"
    )


def _popular(w: World, merchants: np.ndarray, n: int, key: str) -> np.ndarray:
    """Zipf-popular merchants: a few big ones receive most payments (a benign fan-in)."""
    popularity = 1.0 / np.arange(1, len(merchants) + 1) ** 1.1
    ranked = w.fixed(key, lambda rng: rng.permutation(merchants))  # who is popular stays so
    return ranked[w.rng.choice(len(merchants), n, p=popularity / popularity.sum())]


def _payroll(w: World) -> tuple[Rows, Rows]:
    """Monthly salaries paid by each employer within one hour (a benign fan-out)."""
    rng = w.rng
    staff, employer, payday, hour, salary = w.fixed(JOBS, lambda r: _jobs(w, r))
    n_months = len(w.month_start_day)
    day = (w.month_start_day[:, None] + payday[None, :] - 1).ravel()
    t = w.at(day, np.tile(hour, n_months))
    who = np.tile(np.arange(len(staff)), n_months)
    keep = (t >= 0) & (t < w.minutes)
    t, who = t[keep], who[keep]
    usd = salary[who] * rng.uniform(0.98, 1.02, len(who))
    rows = Rows.benign(
        t, np.tile(employer, n_months)[keep], staff[who], usd, FORMATS.index("ACH"), "salary"
    )
    return rows, _savings_sweep(w, rows)


def _jobs(w: World, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Who is employed, by whom, paid which day of the month, at which hour, how much."""
    persons, companies = w.persons, w.businesses(COMPANY)
    staff = persons[rng.random(len(persons)) < float(w.p["employment_rate"])]
    employer = _employer_for(w, rng, staff, companies)
    payday = rng.choice([1, 15, 25, 28], len(companies))[np.searchsorted(companies, employer)]
    hour = rng.integers(6, 9, len(companies))[np.searchsorted(companies, employer)]
    salary = lognormal_of(rng, 3200, 0.45, len(staff)) * w.person_wealth[staff - persons[0]]
    return staff, employer, payday, hour, salary


def _employer_for(
    w: World, rng: np.random.Generator, staff: np.ndarray, companies: np.ndarray
) -> np.ndarray:
    bank = w.accounts.bank
    anywhere = rng.choice(companies, len(staff))
    local = np.empty(len(staff), np.int64)
    for b in range(w.n_banks):  # one pass per bank: employers are mostly local
        here, pool = bank[staff] == b, companies[bank[companies] == b]
        local[here] = rng.choice(pool, here.sum()) if len(pool) else anywhere[here]
    return np.where(rng.random(len(staff)) < 0.7, local, anywhere)


def _savings_sweep(w: World, salary: Rows) -> Rows:
    """Some earners move most of their salary to their own account elsewhere within hours."""
    rng = w.rng
    earners = w.earners(salary)
    savers, pocket = w.fixed("savers", lambda r: _savers(w, r, earners))
    pick = np.flatnonzero(np.isin(salary.dst, savers) & (rng.random(len(salary.dst)) < 0.8))
    src = salary.dst[pick]
    dst = pocket[np.searchsorted(savers, src)]
    t = salary.t[pick] + rng.integers(30, 480, len(pick))
    keep = t < w.minutes
    fmt = rng.choice([FORMATS.index("ACH"), FORMATS.index("Wire")], len(pick))
    usd = salary.usd[pick] * rng.uniform(0.5, 0.95, len(pick))
    return Rows.benign(t[keep], src[keep], dst[keep], usd[keep], fmt[keep], "savings_sweep")


def _savers(w: World, rng: np.random.Generator, earners: np.ndarray) -> tuple[np.ndarray, ...]:
    savers = earners[rng.random(len(earners)) < float(w.p["sweep_share"])]
    return savers, rng.choice(w.persons, len(savers))  # their own account, anywhere


def _bills(w: World) -> Rows:
    rng = w.rng
    payer, payee, dom, hour, usd, fmt = w.fixed("bills", lambda r: _standing_orders(w, r))
    n = len(payer)
    n_months = len(w.month_start_day)
    day = (w.month_start_day[:, None] + dom[None, :] - 1).ravel()
    t = w.at(day, np.tile(hour, n_months))
    idx = np.tile(np.arange(n), n_months)
    keep = (t >= 0) & (t < w.minutes)
    idx, t = idx[keep], t[keep]
    usd_t = usd[idx] * rng.uniform(0.85, 1.15, len(idx))
    return Rows.benign(t, payer[idx], payee[idx], usd_t, fmt[idx], "bill")


def _standing_orders(w: World, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Each person's monthly bills: payee, day of month, hour, usual amount, format."""
    persons, utilities = w.persons, w.businesses(UTILITY)
    per = rng.integers(int(w.p["bills_min"]), int(w.p["bills_max"]) + 1, len(persons))
    payer = np.repeat(persons, per)
    n = len(payer)
    payee, dom, hour = rng.choice(utilities, n), rng.integers(1, 29, n), hours_of(rng, n, "bills")
    usd = lognormal_of(rng, 120, 0.9, n) * w.person_wealth[payer - persons[0]]
    fmt = rng.choice(
        [FORMATS.index(f) for f in ("ACH", "Cheque", "Credit Card")], n, p=[0.75, 0.1, 0.15]
    )
    return payer, payee, dom, hour, usd, fmt


def _cash(w: World) -> Rows:
    """Round cash withdrawals by persons (self-transactions, as in the IBM data)."""
    persons = w.persons
    n = w.rng.poisson(float(w.p["cash_rate"]) * len(persons) * w.days)
    who = w.rng.choice(persons, n)
    notes = w.rng.integers(1, 26, n) * 20.0
    usd = local_to_usd(w, notes * note_unit(w, who), who)
    return Rows.benign(w.times(n, "card"), who, who, usd, FORMATS.index("Cash"), "cash")


def _merchant_cash(w: World) -> Rows:
    """Merchants' takings; some land just under the threshold (hard negatives)."""
    merchants = w.businesses(MERCHANT)
    weekdays = int((w.weekday < 5).sum())
    n = w.rng.poisson(float(w.p["merchant_cash_rate"]) * len(merchants) * weekdays)
    who = w.rng.choice(merchants, n)
    local = np.round(w.lognormal(2500, 0.8, n) * note_unit(w, who) / 10) * 10
    usd = local_to_usd(w, local, who)
    return Rows.benign(
        w.times(n, "office", True), who, who, usd, FORMATS.index("Cash"), "merchant_cash"
    )


def _b2b(w: World) -> Rows:
    rng, business = w.rng, w.business
    # Regular suppliers, not new ones: each business keeps its four.
    suppliers = w.fixed("suppliers", lambda r: r.choice(business, (len(business), 4)))
    weekdays = int((w.weekday < 5).sum())
    n = rng.poisson(float(w.p["b2b_rate"]) * len(business) * weekdays)
    payer = rng.integers(0, len(business), n)
    payee = suppliers[payer, rng.integers(0, 4, n)]
    fmt = rng.choice([FORMATS.index(f) for f in ("Wire", "ACH", "Cheque")], n, p=[0.35, 0.45, 0.2])
    usd = w.lognormal(2500, 1.2, n)
    return Rows.benign(w.times(n, "office", True), business[payer], payee, usd, fmt, "b2b")


def _reinvestment(w: World) -> Rows:
    n = w.rng.poisson(0.01 * len(w.business) * w.days)
    who = w.rng.choice(w.business, n)
    usd = w.lognormal(15000, 1.0, n)
    return Rows.benign(
        w.times(n, "office", True), who, who, usd, FORMATS.index("Reinvestment"), "reinvestment"
    )


def _crypto(w: World) -> Rows:
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
    return Rows.benign(w.times(n, "card"), src, dst, usd, FORMATS.index("Bitcoin"), "crypto")


def _payouts(w: World) -> Rows:
    """Platforms pay many sellers each weekday in one batch: a benign fan-out to new payees."""
    rng = w.rng
    days = np.flatnonzero(w.weekday < 5)
    per = rng.poisson(float(w.p["payouts_per_day"]), (len(w.platform), len(days)))
    payer = np.repeat(np.repeat(w.platform, len(days)), per.ravel())
    hour = np.repeat(np.tile(rng.integers(9, 17, len(days)), len(w.platform)), per.ravel())
    day = np.repeat(np.tile(days, len(w.platform)), per.ravel())
    payee = rng.choice(w.persons, len(payer))
    usd = w.lognormal(400, 0.8, len(payer))
    return Rows.benign(w.at(day, hour), payer, payee, usd, FORMATS.index("ACH"), "payout")


def _escrow(w: World) -> Rows:
    """Escrow agents collect deposits from one-off payers: a benign fan-in of transfers."""
    rng = w.rng
    days = np.flatnonzero(w.weekday < 5)
    per = rng.poisson(float(w.p["escrow_per_day"]), (len(w.escrow), len(days)))
    payee = np.repeat(np.repeat(w.escrow, len(days)), per.ravel())
    day = np.repeat(np.tile(days, len(w.escrow)), per.ravel())
    payer = rng.choice(w.persons, len(payee))
    usd = w.lognormal(4000, 0.6, len(payee))
    fmt = rng.choice([FORMATS.index("Wire"), FORMATS.index("ACH")], len(payee))
    return Rows.benign(w.at(day, w.hours(len(day), "office")), payer, payee, usd, fmt, "escrow")
