"""The body of ``POST /score`` read into transactions, or an `InputError` naming field and index.

A body is one transaction (a JSON object with the normalised frame's fields) or a batch
``{"transactions": [...]}``. Which fields a transaction carries depends on the served
model's feature set (`RequestFields`; ``bank_node.serve_sets`` holds one per set): the
account-history fields for ``aml-v1``, those plus PaySim's own for ``paysim-v1``, and a
card's components for ``card-v1``. Every field is checked before anything is scored, so a bad
transaction changes no account's state; the error says which transaction (its index in
the batch, 0 for a single one) and which field, as ``transactions[3].amount_paid``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from calendar import timegm
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bank_node.online_features import Transaction
from bank_node.schemas import TIMESTAMP_FORMAT
from models.features import PAYMENT_FORMATS

# The currencies of the IBM AML data (the demo's world uses a subset) and PaySim's unit; the
# features only compare the two currencies of a transaction, but a name outside this list
# is far more often a typo or another system's code than a new currency.
KNOWN_CURRENCIES = frozenset(
    {
        "Australian Dollar",
        "Bitcoin",
        "Brazil Real",
        "Canadian Dollar",
        "Euro",
        "Mexican Peso",
        "Ruble",
        "Rupee",
        "Saudi Riyal",
        "Shekel",
        "Swiss Franc",
        "UK Pound",
        "US Dollar",
        "Yen",
        "Yuan",
        "PaySim unit",
    }
)
TEXT_FIELDS = ("from_bank", "from_account", "to_bank", "to_account")
AMOUNT_FIELDS = ("amount_received", "amount_paid")
CHOICE_FIELDS = {
    "receiving_currency": KNOWN_CURRENCIES,
    "payment_currency": KNOWN_CURRENCIES,
    "payment_format": frozenset(PAYMENT_FORMATS),
}
# TIMESTAMP_FORMAT ("%Y/%m/%d %H:%M"), the IBM files' layout.
_CSV_TIMESTAMP = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2}) (\d{1,2}):(\d{2})")
REQUIRED = ("timestamp", *TEXT_FIELDS, *AMOUNT_FIELDS, *CHOICE_FIELDS)
OPTIONAL = ("id",)  # the caller's own reference, echoed back in the answer


# A checker of one set-specific field: (value, field, index, prefix) -> the checked value.
Checker = Callable[[Any, str, int, str], Any]


@dataclass(frozen=True)
class RequestFields:
    """The fields of one transaction for a feature set: the history's (if it reads account
    history) and its own, each with its checker, in the order an error lists them."""

    history: bool = True
    own: tuple[tuple[str, Checker], ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        base = REQUIRED if self.history else ("timestamp",)
        return (*base, *(name for name, _ in self.own))


HISTORY_FIELDS = RequestFields()  # aml-v1's: the account-history features' fields only


class InputError(Exception):
    """A request the service refuses: HTTP status, metric reason, message, field and index."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field
        self.index = index

    def body(self) -> dict[str, Any]:
        """The one error shape of the service (as the portal's API): message and extra."""
        return {"message": self.message, "extra": {"field": self.field, "index": self.index}}


@dataclass(frozen=True)
class ScoreRequest:
    """What a body asked to score: the transactions, their ids, and whether it was a batch.

    ``transactions`` are the account-history view of each (empty when the feature set reads
    no history); ``values`` the set's own checked fields of each, with ``timestamp`` in
    seconds (empty dicts when it has none).
    """

    transactions: list[Transaction]
    ids: list[Any]
    batch: bool
    values: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def parse_body(
    raw: bytes, *, max_batch: int, fields: RequestFields = HISTORY_FIELDS
) -> ScoreRequest:
    """The transactions of a ``POST /score`` body, all checked, in the order given."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(400, "not_json", f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise InputError(
            400, "not_json", "the body is not JSON we read: nested too deeply"
        ) from None
    if not isinstance(body, dict):
        raise InputError(
            400,
            "invalid",
            'the body must be a JSON object: one transaction or {"transactions": [...]}',
        )
    if "transactions" not in body:
        return _request([checked(body, index=0, prefix="", fields=fields)], batch=False)
    items = body["transactions"]
    if set(body) != {"transactions"}:
        extra = sorted(set(body) - {"transactions"})
        raise InputError(
            422, "invalid", f"a batch holds only transactions, not {extra}", field=extra[0]
        )
    if not isinstance(items, list) or not items:
        raise InputError(
            422, "invalid", "transactions must be a non-empty list", field="transactions"
        )
    if len(items) > max_batch:
        raise InputError(
            413,
            "too_large",
            f"a batch holds at most {max_batch} transactions, not {len(items)}; split it",
            field="transactions",
        )
    parsed = [
        checked(item, index=i, prefix=f"transactions[{i}].", fields=fields)
        for i, item in enumerate(items)
    ]
    return _request(parsed, batch=True)


Checked = tuple[Transaction | None, dict[str, Any], Any]


def _request(parsed: list[Checked], *, batch: bool) -> ScoreRequest:
    history = [p[0] for p in parsed if p[0] is not None]
    return ScoreRequest(history, [p[2] for p in parsed], batch, [p[1] for p in parsed])


def checked(item: Any, *, index: int, prefix: str, fields: RequestFields) -> Checked:
    """One transaction for ``fields``: its history view (None without), own values and id."""
    if not isinstance(item, dict):
        raise InputError(
            422,
            "invalid",
            "a transaction must be a JSON object",
            field=prefix.rstrip(".") or None,
            index=index,
        )
    _refuse_unknown(item, index, prefix, fields.required)
    missing = [name for name in fields.required if name not in item]
    if missing:
        needs = ", ".join(fields.required)
        raise InputError(
            422,
            "invalid",
            f"missing field {missing[0]} (needs {needs})",
            field=prefix + missing[0],
            index=index,
        )
    when = _timestamp(item["timestamp"], index, prefix)
    history = None
    if fields.history:
        values: dict[str, Any] = {"timestamp": when}
        for name in TEXT_FIELDS:
            values[name] = _text(item[name], name, index, prefix)
        for name in AMOUNT_FIELDS:
            values[name] = amount(item[name], name, index, prefix)
        for name, allowed in CHOICE_FIELDS.items():
            values[name] = choice(item[name], name, allowed, index, prefix)
        history = Transaction(**values)
    own: dict[str, Any] = {"timestamp": when} if fields.own else {}
    for name, check in fields.own:
        own[name] = check(item[name], name, index, prefix)
    return history, own, item.get("id")


def _refuse_unknown(
    item: dict[str, Any], index: int, prefix: str, required: tuple[str, ...]
) -> None:
    known = [*required, *OPTIONAL]
    for name in sorted(set(item) - set(known)):
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; the fields are {', '.join(known)}"
        raise InputError(
            422, "invalid", f"unknown field {name!r}{hint}", field=prefix + str(name), index=index
        )


def bad(name: str, index: int, prefix: str, expected: str, value: Any) -> InputError:
    """The 422 for a field holding something else than ``expected``."""
    shown = json.dumps(value)[:80]
    return InputError(
        422,
        "invalid",
        f"{prefix}{name}: expected {expected}, found {shown}",
        field=prefix + name,
        index=index,
    )


def _timestamp(value: Any, index: int, prefix: str) -> int:
    """Seconds since the epoch (UTC) of "2022/09/01 14:05" or ISO 8601; naive means UTC."""
    expected = f'a timestamp like "2022/09/01 14:05" ({TIMESTAMP_FORMAT}) or ISO 8601'
    if not isinstance(value, str):
        raise bad("timestamp", index, prefix, expected, value)
    # A regular expression rather than strptime, which takes a third of a request's parsing.
    match = _CSV_TIMESTAMP.fullmatch(value.strip())
    try:
        if match:
            year, month, day, hour, minute = (int(part) for part in match.groups())
            parsed = datetime(year, month, day, hour, minute)
        else:
            parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise bad("timestamp", index, prefix, expected, value) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    # Whole seconds, as the batch's datetime64[s] cast keeps them.
    return timegm(parsed.timetuple())


def _text(value: Any, field: str, index: int, prefix: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad(field, index, prefix, "a non-empty string", value)
    return value.strip()  # as the CSV loaders strip every text cell


def amount(value: Any, field: str, index: int, prefix: str) -> float:
    """A non-negative finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(field, index, prefix, "a non-negative number", value)
    try:
        number = float(value)
    except OverflowError:
        raise bad(field, index, prefix, "a non-negative number", value) from None
    if not math.isfinite(number) or number < 0:
        raise bad(field, index, prefix, "a non-negative number", value)
    return number


def choice(value: Any, field: str, allowed: frozenset[str], index: int, prefix: str) -> str:
    """One of ``allowed`` (surrounding spaces stripped), with a did-you-mean hint."""
    text = value.strip() if isinstance(value, str) else None
    if text not in allowed:
        close = difflib.get_close_matches(str(value), sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise bad(field, index, prefix, f"one of {', '.join(sorted(allowed))}{hint}", value)
    return str(text)
