"""Laundering typologies: attempts, their counterparties, and each scheme's transactions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulation.world.banks import Rows, World, categorical, local_to_usd
from simulation.world.presets import (
    BENIGN_KINDS,
    FORMATS,
    LAUNDER_FORMAT_P,
    REPORTING_THRESHOLD,
    TYPOLOGIES,
    knob,
)


@dataclass
class _Attempts:
    """Laundering attempts of one typology: home bank and period of each."""

    ids: np.ndarray
    home: np.ndarray
    train: np.ndarray
    typology: int


def _draw_attempts(w: World) -> list[_Attempts]:
    """Attempts' home banks (by size and rate factor) and typologies.

    Training-period attempts follow the home bank's typology mix; held-out-period ones
    are even over all typologies, so every bank meets every typology when evaluated.
    """
    rng, m = w.rng, w.n_members
    rate = float(w.p["attempts_per_day"])
    train_days, test_days = w.attempt_days()
    n_train = rng.poisson(rate * train_days)
    n_test = rng.poisson(rate * test_days)
    weight = w.size_weight * w.rate_factor
    train_weight = weight * (w.mix.sum(axis=1) > 0)  # a bank allowed nothing launders nothing
    home = np.concatenate([
        rng.choice(m, n_train, p=train_weight / train_weight.sum()),
        rng.choice(m, n_test, p=weight / weight.sum()),
    ])  # fmt: skip
    train = np.arange(n_train + n_test) < n_train
    typ = rng.integers(0, len(TYPOLOGIES), n_train + n_test)
    typ[:n_train] = categorical(rng, w.mix[home[:n_train]])
    ids = w.attempt_base + np.arange(n_train + n_test)
    return [
        _Attempts(ids[typ == k], home[typ == k], train[typ == k], k) for k in range(len(TYPOLOGIES))
    ]


def _counterparties(w: World, att: _Attempts, per: np.ndarray, cross: float) -> np.ndarray:
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


def _mule_or_customer(w: World, bank: np.ndarray) -> np.ndarray:
    fresh = w.rng.random(len(bank)) < float(w.p["fresh_mule_share"])
    new = w.accounts.add(bank[fresh])
    out = w.existing_person(bank)
    out[fresh] = new
    reuse = float(knob(w.p, "mule_reuse_share"))
    return _reuse_mules(w, bank, out, reuse) if reuse > 0 else out


def _reuse_mules(w: World, bank: np.ndarray, accounts: np.ndarray, share: float) -> np.ndarray:
    """With chance ``share`` each of ``accounts`` (changed in place) becomes one an earlier
    scheme used at its bank (when there is one); then all join their banks' recruited ones.

    Real mule accounts serve scheme after scheme until the bank closes them; what a member
    saw one of them receive is then what the cross-bank counterparty sketches can carry.
    """
    pick = w.rng.random(len(bank)) < share
    draw = w.rng.random(len(bank))
    for i in np.flatnonzero(pick):
        earlier = w.recruited.pick(int(bank[i]), float(draw[i]))
        if earlier is not None:
            accounts[i] = earlier
    for b, account in zip(bank.tolist(), accounts.tolist(), strict=True):
        w.recruited.add(b, account)
    return accounts


def _cross(w: World, typical: float | None = None) -> float:
    """A scheme's chance per counterparty of banking elsewhere, scaled by the world's knob."""
    share = float(w.p["cross_bank_share"])
    return share if typical is None else min(1.0, typical * share / 0.55)


def _rows_for(
    att: _Attempts, per: np.ndarray, src: Any, dst: Any, offset: Any, usd: Any, fmt: Any
) -> Rows:
    n = int(per.sum())
    typ = np.full(n, att.typology)
    kind = len(BENIGN_KINDS) + typ
    return Rows(
        np.asarray(offset, np.int64), np.asarray(src, np.int64), np.asarray(dst, np.int64),
        np.asarray(usd, float), np.asarray(fmt, np.int64), kind, np.repeat(att.ids, per), typ,
    )  # fmt: skip


def _launder_format(w: World, n: int) -> np.ndarray:
    names = list(LAUNDER_FORMAT_P)
    return np.array([FORMATS.index(f) for f in names])[
        w.rng.choice(len(names), n, p=list(LAUNDER_FORMAT_P.values()))
    ]


def _start_of_day(w: World, n: int) -> np.ndarray:
    """Time of day (minutes) at which each attempt begins."""
    return w.hours(n, "launder") * 60 + w.rng.integers(0, 60, n)


def _fan(w: World, att: _Attempts, inward: bool) -> Rows:
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


def _cycle(w: World, att: _Attempts) -> Rows:
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


def _structuring(w: World, att: _Attempts) -> Rows:
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
    return _rows_for(att, per, who, dst, offset, local_to_usd(w, local, who), fmt)


def _pass_through(w: World, att: _Attempts) -> Rows:
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


def _scatter_gather(w: World, att: _Attempts) -> Rows:
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
    return Rows.concat([first, second])


def _gather_scatter(w: World, att: _Attempts) -> Rows:
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
    return Rows.concat([gather, scatter])


def _account_takeover(w: World, att: _Attempts) -> Rows:
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


def _place_in_time(w: World, rows: Rows, att: _Attempts) -> Rows:
    """Turn attempt-relative offsets into absolute times inside each attempt's period.

    A scheme starts on a day of this object's calendar (the whole world, or one window of
    it) and within its period; it ends before the period does, but may run on past the
    window's end (the chunked writer carries those rows into the next window).
    """
    margin = 6 * 60  # keep schemes clear of the train/holdout boundary
    local = np.searchsorted(att.ids, rows.attempt)
    span = np.zeros(len(att.ids), np.int64)
    np.maximum.at(span, local, rows.t)
    lo = np.where(att.train, w.period_start, w.train_end + margin)
    hi = np.where(att.train, w.train_end - margin, w.period_end) - span
    lo, hi = np.maximum(lo, 0), np.minimum(hi, w.minutes)
    first_day, last_day = -(-lo // 1440), np.maximum(-(-lo // 1440), hi // 1440)
    day = first_day + (w.rng.random(len(att.ids)) * (last_day - first_day)).astype(np.int64)
    rows.t = rows.t + day[local] * 1440
    return rows.take(np.flatnonzero((rows.t >= lo[local]) & (rows.t < w.period_end)))


def laundering(w: World) -> Rows:
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
    return Rows.concat(parts) if parts else Rows.empty()  # a short window may have none
