"""The as-of features of `models.features` written once as SQL window definitions.

`features_query` returns one ``SELECT`` that an SQL engine with window functions runs over
a table of transactions, giving the same values as `models.features.compute_features`
without holding the data in memory: DuckDB on one machine (``bank_node.features_duckdb``),
Spark SQL on a cluster. The input relation has these columns (``bank_node.staging``
writes them):

``rid``     BIGINT   the row's position in the input (file order; ties in time keep it)
``tick``    BIGINT   the timestamp in nanoseconds (orders the rows)
``secs``    BIGINT   the timestamp in whole seconds (calendar features and time windows)
``from_bank``, ``from_account``, ``to_bank``, ``to_account``, ``payment_currency``,
``receiving_currency``, ``payment_format``  VARCHAR
``amount_paid``, ``amount_received``        DOUBLE (non-negative, as the loaders check)

plus any columns named in ``carry`` (passed through unchanged, e.g. the line number).

How the pandas implementation maps to SQL:

* rows are ordered by ``(tick, rid)``: equal timestamps count as earlier when they come
  first in the input, as `compute_features`' stable sort has it;
* an account is ``(bank, account)``: account ids are only unique within a bank;
* each row is an "out" event of its sender and an "in" event of its receiver; within an
  account the events are ordered ``(tick, rid, out before in)``;
* a windowed sum over ``(t - w, t]`` is the account's running sum (``ROWS`` frame) minus
  the running sum at the last event at or before ``t - w``; running sums of non-negative
  values never decrease, so that last value is the ``MAX`` over a ``RANGE ... PRECEDING``
  frame on ``secs``. This is the pandas ``running[i] - running[start - 1]``, so the
  cancellation in that difference is the same as pandas'.

Only standard SQL is used (window functions, named ``WINDOW`` clauses, ``RANGE`` frames with
a numeric offset, ``LN``, ``SIN``, ``COS``, ``PI``, ``SQRT``, ``GREATEST``/``LEAST``,
``CASE``), so Spark SQL runs the query text unchanged (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from models.features import (
    _NO_HISTORY_MINUTES,
    FEATURE_NAMES,
    PAYMENT_FORMATS,
    REPORTING_THRESHOLD,
    WINDOWS,
)

# The staged columns an engine's feature rows keep besides ``rid``: where each row came from,
# its day (the partition), its timestamp (the split) and its label (training).
CARRY = ("source", "line", "day", "tick", "label")
_ROW_ORDER = "ORDER BY tick, rid"
_EVENT_ORDER = "ORDER BY tick, rid, is_out DESC"
_ACCOUNT = "PARTITION BY bank, account"
_CUMULATIVE = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
# Sums that windows take over an account's events: (name, value expression).
_EVENT_SUMS = [
    ("out_n", "CAST(is_out AS DOUBLE)"),
    ("in_n", "CAST(1 - is_out AS DOUBLE)"),
    ("out_amount", "out_amount"),
    ("in_amount", "in_amount"),
    ("new_out", "new_pair * is_out"),
    ("new_in", "new_pair * (1 - is_out)"),
]


def _log1p(expr: str) -> str:
    # LN(1 + x) rather than LOG1P: DuckDB has no LOG1P; the difference is below 2e-16.
    return f"LN(1 + ({expr}))"


def _double(number: float) -> str:
    """A DOUBLE constant. Spark SQL reads ``3600.0`` as a DECIMAL, and a DECIMAL quotient
    keeps six decimal places (an hour of day off by up to 5e-7, its sine by ~1e-7); a
    cast makes the division a double's in every engine, as numpy's."""
    return f"CAST({number!r} AS DOUBLE)"


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1.0 ELSE 0.0 END"


def _row_columns() -> dict[str, str]:
    """Features of the row alone: calendar, amount shape, banks, currency, format."""
    hour = f"((secs % 86400) / {_double(3600.0)})"
    weekday = "(((secs - secs % 86400) / 86400 + 3) % 7)"  # 1970-01-01 was a Thursday
    paid = "amount_paid"
    cents = f"({paid} * 100)"
    # numpy rounds half to even, SQL's ROUND half away from zero; a multiple of 10000 is
    # even, so "rounds to a positive multiple of 10000" is |cents - 10000 k| <= 0.5, k >= 1.
    nearest = f"ROUND({cents} / 10000)"
    cols = {
        "hour_sin": f"SIN(2 * PI() * {hour} / 24)",
        "hour_cos": f"COS(2 * PI() * {hour} / 24)",
        "weekday_sin": f"SIN(2 * PI() * {weekday} / 7)",
        "weekday_cos": f"COS(2 * PI() * {weekday} / 7)",
        "is_night": _flag(f"{hour} < 6"),
        "is_weekend": _flag(f"{weekday} >= 5"),
        "log_amount": f"{_log1p(paid)} / 10",
        "below_threshold": _flag(
            f"{paid} >= {0.9 * REPORTING_THRESHOLD} AND {paid} < {REPORTING_THRESHOLD}"
        ),
        "round_amount": _flag(f"{nearest} >= 1 AND ABS({cents} - 10000 * {nearest}) <= 0.5"),
        "cross_bank": _flag("from_bank <> to_bank"),
        "currency_mismatch": _flag("payment_currency <> receiving_currency"),
        "self_transfer": _flag("from_bank = to_bank AND from_account = to_account"),
        "new_counterparty": "new_pair",
        "pair_count": f"{_log1p('pair_seen')} / 4",
    }
    for name in PAYMENT_FORMATS:
        cols["fmt_" + name.lower().replace(" ", "_")] = _flag(f"payment_format = '{name}'")
    return cols


def _pairs_cte() -> str:
    """Each row's earlier rows of the same (sender, receiver) pair."""
    new_pair = _flag("pair_seen = 0")
    return f"""
paired AS (
  SELECT tx.*, ROW_NUMBER() OVER (
      PARTITION BY from_bank, from_account, to_bank, to_account {_ROW_ORDER}) - 1 AS pair_seen
  FROM tx
),
rowwise AS (
  SELECT paired.*, {new_pair} AS new_pair FROM paired
)"""  # noqa: S608 (constant SQL text)


def _events_cte() -> str:
    """Every row as its sender's "out" event and its receiver's "in" event."""
    return """
events AS (
  SELECT rid, tick, secs, from_bank AS bank, from_account AS account, 1 AS is_out,
    amount_paid AS out_amount, 0.0 AS in_amount, new_pair FROM rowwise
  UNION ALL
  SELECT rid, tick, secs, to_bank AS bank, to_account AS account, 0 AS is_out,
    0.0 AS out_amount, amount_received AS in_amount, new_pair FROM rowwise
)"""


def _running_cte() -> str:
    """Running sums per account (ROWS frame), and the previous two events for recency."""
    log_out = _log1p("out_amount")
    sums = [f"SUM({expr}) OVER acc_rows AS run_{name}" for name, expr in _EVENT_SUMS]
    sums += [
        f"SUM({log_out} * is_out) OVER acc_rows AS run_s",
        f"SUM({log_out} * {log_out} * is_out) OVER acc_rows AS run_s2",
        f"{log_out} AS log_out",
    ]
    lags = [f"LAG({c}, {k}) OVER acc_order AS {c}_{k}" for k in (1, 2) for c in ("rid", "secs")]
    return f"""
running AS (
  SELECT events.*, {", ".join(sums + lags)}
  FROM events
  WINDOW acc_rows AS ({_ACCOUNT} {_EVENT_ORDER} {_CUMULATIVE}),
    acc_order AS ({_ACCOUNT} {_EVENT_ORDER})
)"""  # noqa: S608 (constant SQL text)


def _windowed_cte() -> str:
    """Each window's running sum at the last event at or before ``t - window``."""
    before, windows = [], []
    for label, seconds in WINDOWS.items():
        windows.append(
            f"before_{label} AS ({_ACCOUNT} ORDER BY secs "
            f"RANGE BETWEEN UNBOUNDED PRECEDING AND {seconds} PRECEDING)"
        )
        names = [n for n, _ in _EVENT_SUMS if label == "24h" or not n.startswith("new_")]
        before += [
            f"GREATEST(run_{n} - COALESCE(MAX(run_{n}) OVER before_{label}, 0.0), 0.0) "
            f"AS {n}_{label}"
            for n in names
        ]
    return f"""
windowed AS (
  SELECT running.*, {", ".join(before)}
  FROM running
  WINDOW {", ".join(windows)}
)"""  # noqa: S608 (constant SQL text)


def _event_columns() -> dict[str, str]:
    """Per-event values that become the sender's (src) or the receiver's (dst) features."""
    prev_same_row = "(rid_1 IS NOT NULL AND rid_1 = rid)"  # a self-transfer's own out event
    prev_secs = f"CASE WHEN {prev_same_row} THEN secs_2 ELSE secs_1 END"
    seen = f"(CASE WHEN {prev_same_row} THEN rid_2 ELSE rid_1 END) IS NOT NULL"
    cap = _double(float(_NO_HISTORY_MINUTES))
    minutes = f"CASE WHEN {seen} THEN (secs - {prev_secs}) / {_double(60.0)} ELSE {cap} END"
    low, high = "LEAST(in_amount_24h, out_amount_24h)", "GREATEST(in_amount_24h, out_amount_24h)"
    cols = {
        "since_last": f"{_log1p(f'LEAST({minutes}, {cap})')} / 10",
        "first_seen": _flag(f"NOT ({seen})"),
        "pass_through_24h": f"CASE WHEN {high} > 0 THEN {low} / {high} ELSE 0.0 END",
        "amount_zscore": _zscore(),
    }
    for label in WINDOWS:
        cols[f"out_count_{label}"] = f"{_log1p(f'out_n_{label}')} / 4"
        cols[f"out_sum_{label}"] = f"{_log1p(f'out_amount_{label}')} / 10"
        cols[f"in_count_{label}"] = f"{_log1p(f'in_n_{label}')} / 4"
        cols[f"in_sum_{label}"] = f"{_log1p(f'in_amount_{label}')} / 10"
    # Fan degrees: the running count of new pairs among the account's out (in) events is
    # pandas' cumulative sum of new_pair grouped by sender (receiver), in the same order.
    cols["distinct_payees"] = f"{_log1p('run_new_out')} / 4"
    cols["distinct_payers"] = f"{_log1p('run_new_in')} / 4"
    cols["new_payees_24h"] = f"{_log1p('new_out_24h')} / 3"
    cols["new_payers_24h"] = f"{_log1p('new_in_24h')} / 3"
    return cols


def _zscore() -> str:
    """Log amount against the sender's earlier payments (0 without earlier payments)."""
    n = "(run_out_n - 1)"
    s, s2 = "(run_s - log_out)", "(run_s2 - log_out * log_out)"
    mean = f"({s} / GREATEST({n}, 1))"
    var = f"GREATEST({s2} / GREATEST({n}, 1) - {mean} * {mean}, 0.0)"
    z = f"(log_out - {mean}) / SQRT({var} + 0.25)"
    return f"CASE WHEN {n} > 0 THEN GREATEST(LEAST({z}, 6), -6) / 3 ELSE 0.0 END"


def _event_feature(name: str) -> str:
    """``src_x`` is ``x`` at the sender's out event (``o``), ``dst_x`` at the receiver's in
    event (``i``); ``amount_zscore_src`` is the sender's."""
    if name == "amount_zscore_src":
        return "o.amount_zscore"
    side, rest = name.split("_", 1)
    return f"{'o' if side == 'src' else 'i'}.{rest}"


def features_query(source: str, *, carry: Sequence[str] = (), float_type: str = "REAL") -> str:
    """The ``SELECT`` giving ``rid``, the ``carry`` columns and `FEATURE_NAMES` per row.

    ``source`` is a table name or a parenthesised subquery with the columns in the module
    docstring; ``float_type`` is the SQL type of every feature column (``REAL`` matches the
    float32 of `compute_features`, ``DOUBLE`` keeps the values before that cast). Rows come
    out in no particular order; join or sort on ``rid``.
    """
    row, event = _row_columns(), _event_columns()
    select = []
    for name in FEATURE_NAMES:
        expr = row.get(name) or _event_feature(name)
        select.append(f"CAST({expr} AS {float_type}) AS {name}")
    event_select = ", ".join(f"{expr} AS {name}" for name, expr in event.items())
    carried = "".join(f"r.{c}, " for c in carry)
    return f"""
WITH tx AS (SELECT * FROM {source}),{_pairs_cte()},{_events_cte()},{_running_cte()},
{_windowed_cte()},
event_features AS (
  SELECT rid, is_out, {event_select} FROM windowed
)
SELECT r.rid, {carried}{", ".join(select)}
FROM rowwise r
JOIN event_features o ON o.rid = r.rid AND o.is_out = 1
JOIN event_features i ON i.rid = r.rid AND i.is_out = 0
"""  # noqa: S608 (source: the caller's relation)
