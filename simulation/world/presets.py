"""The world generator's vocabulary and presets: schema, formats, typologies, parameters."""

from __future__ import annotations

from typing import Any

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
_HI_SMALL: dict[str, Any] = {
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
}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    "demo": {**_TINY, "days": 70, "persons_largest_bank": 1200},
    # About 20 banks and 2M transactions, with two holdout typologies.
    "small": _SMALL,
    # Near IBM's HI-Small (about 5M transactions, 30 banks).
    "hi-small": _HI_SMALL,
    # IBM's HI-Medium and HI-Large sizes (about 30M and 180M transactions): hi-small's
    # banks and holdouts with more customers over a longer period, and attempts scaled with
    # the customers so the laundering rate per row stays about hi-small's. Too large for
    # memory: generated `CHUNK_DAYS` days at a time (`simulation.world.chunked`).
    "hi-medium": {
        **_HI_SMALL,
        "days": 180,
        "persons_largest_bank": 78000,
        "attempts_per_day": 64.0,
    },
    "hi-large": {
        **_HI_SMALL,
        "days": 360,
        "persons_largest_bank": 234000,
        "attempts_per_day": 192.0,
    },
}
# Knobs no preset sets: a world is written (manifest included) as it was before the knob
# existed unless an override names one. Value: the default, which changes nothing.
OPTIONAL_KNOBS: dict[str, Any] = {
    # Chance that an account a scheme involves is, instead, one that an earlier scheme at
    # the same bank already used: a mule recruited once and used again (0: never).
    "mule_reuse_share": 0.0,
}


def knob(params: dict[str, Any], key: str) -> Any:
    """A generator parameter, or an optional knob's default when no override set it."""
    return params[key] if key in params else OPTIONAL_KNOBS[key]


# Presets generated a window of days at a time by default (1M to 1.5M transactions a window).
CHUNK_DAYS: dict[str, int] = {"hi-medium": 6, "hi-large": 3}

MERCHANT, COMPANY, UTILITY = range(3)  # roles of business accounts
HOUR_W = {  # relative activity by hour of day
    "card": [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 11, 13, 16, 14, 12, 11, 12, 15, 17, 16, 13, 9, 5, 2],
    "office": [0, 0, 0, 0, 0, 0, 0, 1, 5, 9, 10, 10, 8, 9, 10, 10, 9, 6, 2, 0, 0, 0, 0, 0],
    "bills": [2, 6, 8, 4, 1, 1, 1, 2, 3, 4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2],
    "launder": [2, 2, 2, 2, 2, 2, 3, 4, 7, 9, 10, 10, 9, 9, 10, 10, 9, 7, 5, 4, 3, 3, 2, 2],
    "night": [9, 10, 10, 9, 8, 6, 4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 4, 5, 6, 8],
}
LAUNDER_FORMAT_P = {"ACH": 0.45, "Wire": 0.3, "Cheque": 0.08, "Credit Card": 0.05, "Bitcoin": 0.12}


def resolve_params(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    params = dict(PRESETS[preset])
    known = {**OPTIONAL_KNOBS, **params}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"unknown generator parameters {unknown}; known: {sorted(known)}")
    for key, value in overrides.items():
        expected = type(known[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ValueError(f"parameter {key!r} must be {expected.__name__}, got {value!r}")
        params[key] = value
    if params["days"] < 7 or params["external_banks"] < 1 or not 0 < params["train_fraction"] < 1:
        raise ValueError("need days >= 7, external_banks >= 1 and 0 < train_fraction < 1")
    if params["typology_alpha"] < 0 or params["base_rate_spread"] < 0:
        raise ValueError("typology_alpha and base_rate_spread must not be negative")
    if not 0 <= knob(params, "mule_reuse_share") <= 1:
        raise ValueError("mule_reuse_share must be in [0, 1]")
    return params


def check_holdout(holdout: dict[str, Any], n_banks: int) -> dict[str, list[str]]:
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
