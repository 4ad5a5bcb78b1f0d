"""Plain-words phrases for a feature's raw value, as an analyst reads an alert's reasons.

Each phrase undoes the fixed transform `models.features` applied (``log1p(n) / 4`` for a
count, ``log1p(amount) / 10`` for an amount, the sine and cosine of the hour, ...) so the
analyst reads "7 payments out of the sender's account in the last hour", not "0.52".
Card features (``CARD_FEATURE_NAMES``) are anonymised PCA components: they get a generic
phrase. A name no phrase knows gets ``"<name> = <value>"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from models.features import (
    _NO_HISTORY_MINUTES,
    CARD_COMPONENTS,
    PAYMENT_FORMATS,
    REPORTING_THRESHOLD,
    WINDOWS,
)

Row = Mapping[str, float]
Phrase = Callable[[str, Row], str]

_WINDOW_WORDS = {"1h": "the last hour", "24h": "the last 24 hours", "7d": "the last 7 days"}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The divisor `models.features` applied after log1p, by feature name.
_COUNT_SCALE = 4.0
_AMOUNT_SCALE = 10.0
_NEW_PARTY_SCALE = 3.0


def _count(value: float, scale: float = _COUNT_SCALE) -> int:
    return max(0, round(math.expm1(value * scale)))


def _amount(value: float) -> str:
    return f"{max(0.0, math.expm1(value * _AMOUNT_SCALE)):,.2f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _duration(minutes: float) -> str:
    if minutes < 60:
        return _plural(round(minutes), "minute")
    if minutes < 48 * 60:
        return _plural(round(minutes / 60), "hour")
    return _plural(round(minutes / 1440), "day")


def _flag(value: float) -> bool:
    return value >= 0.5


_VELOCITY_WORDS = {
    "src_out_count": "{n} out of the sender's account",
    "src_out_sum": "{amount} paid out by the sender",
    "dst_in_count": "{n} into the receiver's account",
    "dst_in_sum": "{amount} received by the receiver",
}


def _velocity(name: str, row: Row) -> str:
    stem, window = name.rsplit("_", 1)
    value = row[name]
    words = _VELOCITY_WORDS[stem].format(n=_plural(_count(value), "payment"), amount=_amount(value))
    return f"{words} in {_WINDOW_WORDS[window]} (this one included)"


def _recency(name: str, row: Row) -> str:
    who = "sender" if name.startswith("src") else "receiver"
    minutes = math.expm1(row[name] * _AMOUNT_SCALE)
    if minutes >= _NO_HISTORY_MINUTES * 0.999:
        return f"no earlier transaction of the {who} in 90 days"
    return f"{_duration(minutes)} since the {who}'s previous transaction"


def _first_seen(name: str, row: Row) -> str:
    who = "sender" if name.startswith("src") else "receiver"
    if _flag(row[name]):
        return f"the {who}'s first transaction on record"
    return f"the {who} has earlier transactions on record"


def _counterparty(name: str, row: Row) -> str:
    value = row[name]
    if name == "new_counterparty":
        if _flag(value):
            return "the first payment between these two accounts"
        return "these two accounts have paid each other before"
    if name == "pair_count":
        return f"{_plural(_count(value), 'earlier payment')} between these two accounts"
    if name == "src_distinct_payees":
        return f"the sender has paid {_plural(_count(value), 'different account')} so far"
    if name == "dst_distinct_payers":
        return f"the receiver has been paid by {_plural(_count(value), 'different account')} so far"
    new = _count(value, _NEW_PARTY_SCALE)
    if name == "src_new_payees_24h":
        return f"the sender paid {_plural(new, 'new payee')} in the last 24 hours"
    return f"the receiver was paid by {_plural(new, 'new payer')} in the last 24 hours"


def _pass_through(name: str, row: Row) -> str:
    who = "sender" if name.startswith("src") else "receiver"
    share = round(100 * min(max(row[name], 0.0), 1.0))
    return (
        f"money in and out of the {who}'s account in the last 24 hours balance to {share}% "
        "(funds passed straight through)"
    )


def _amount_shape(name: str, row: Row) -> str:
    value = row[name]
    if name == "log_amount":
        return f"amount {_amount(value)}"
    if name == "amount_zscore_src":
        z = 3 * value  # features.py divides the clipped z-score by 3
        if abs(z) < 0.05:
            return "amount in line with the sender's earlier payments (or none to compare)"
        direction = "above" if z > 0 else "below"
        return f"amount {abs(z):.1f} standard deviations {direction} the sender's usual payments"
    if name == "below_threshold":
        if _flag(value):
            return f"amount just below the {REPORTING_THRESHOLD:,.0f} reporting threshold"
        return f"amount not just below the {REPORTING_THRESHOLD:,.0f} reporting threshold"
    return "a round amount (a multiple of 100)" if _flag(value) else "not a round amount"


_FLAG_WORDS = {
    "cross_bank": ("paid to an account at another bank", "paid within the same bank"),
    "currency_mismatch": (
        "paid and received in different currencies",
        "paid and received in one currency",
    ),
    "self_transfer": ("sender and receiver are the same account", "sender and receiver differ"),
}


def _counterparties_flag(name: str, row: Row) -> str:
    yes, no = _FLAG_WORDS[name]
    return yes if _flag(row[name]) else no


def _format(name: str, row: Row) -> str:
    label = _FORMAT_LABELS[name]
    return f"paid by {label}" if _flag(row[name]) else f"not paid by {label}"


def _angle(row: Row, stem: str) -> float | None:
    """The angle of a cyclical encoding in [0, 2*pi), None without both of its halves."""
    sin, cos = row.get(f"{stem}_sin"), row.get(f"{stem}_cos")
    if sin is None or cos is None:
        return None
    return math.atan2(sin, cos) % (2 * math.pi)


def _calendar(name: str, row: Row) -> str:
    if name == "is_night":
        return "made at night (before 06:00)" if _flag(row[name]) else "made after 06:00"
    if name == "is_weekend":
        return "made at the weekend" if _flag(row[name]) else "made on a weekday"
    stem = name.rsplit("_", 1)[0]
    angle = _angle(row, stem)
    if angle is None:
        return _generic(name, row)
    if stem == "hour":
        minutes = round(angle / (2 * math.pi) * 24 * 60) % (24 * 60)
        return f"made at {minutes // 60:02d}:{minutes % 60:02d} (time of day)"
    return f"made on a {_WEEKDAYS[round(angle / (2 * math.pi) * 7) % 7]}"


def _card(name: str, row: Row) -> str:
    return f"card pattern {name.upper()} at {4 * row[name]:+.2f} (an anonymised component)"


def _generic(name: str, row: Row) -> str:
    return f"{name} = {row[name]:.3g}"


_FORMAT_LABELS = {"fmt_" + f.lower().replace(" ", "_"): f.lower() for f in PAYMENT_FORMATS}
_FORMAT_LABELS["fmt_ach"] = "ACH"


def _phrases() -> dict[str, Phrase]:
    table: dict[str, Phrase] = {}
    for window in WINDOWS:
        for stem in ("src_out_count", "src_out_sum", "dst_in_count", "dst_in_sum"):
            table[f"{stem}_{window}"] = _velocity
    for side in ("src", "dst"):
        table[f"{side}_since_last"] = _recency
        table[f"{side}_first_seen"] = _first_seen
        table[f"{side}_pass_through_24h"] = _pass_through
    for name in ("new_counterparty", "pair_count", "src_distinct_payees", "dst_distinct_payers"):
        table[name] = _counterparty
    table["src_new_payees_24h"] = table["dst_new_payers_24h"] = _counterparty
    for name in ("log_amount", "amount_zscore_src", "below_threshold", "round_amount"):
        table[name] = _amount_shape
    for name in _FLAG_WORDS:
        table[name] = _counterparties_flag
    for name in _FORMAT_LABELS:
        table[name] = _format
    for name in ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "is_night", "is_weekend"):
        table[name] = _calendar
    for name in CARD_COMPONENTS:
        table[name] = _card
    return table


PHRASES: dict[str, Phrase] = _phrases()


def describe(name: str, row: Row) -> str:
    """The phrase for feature ``name`` of a row given as ``{feature: raw value}``.

    ``row`` holds the raw values (`compute_features` output, before any normalisation)
    of the row's features; the calendar phrases read both halves of a sine/cosine pair.
    """
    return PHRASES.get(name, _generic)(name, row)
