"""Differential-privacy budget: a round policy's DP settings, the round plan, and the RDP
accountant state a bank keeps across rounds (Opacus's accounting, no training here).

What the guarantee covers, and what it does not, is in `models.privacy`'s docstring.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

ACCOUNTANT = "rdp"
STATE_FORMAT = "consortium-dp-accountant/1"
# get_noise_multiplier's binary search stops this far below the target ε at most.
EPSILON_TOLERANCE = 0.01

AccountantState = dict[str, Any]
History = list[tuple[float, float, int]]


class PrivacyBudgetExceeded(ValueError):
    """One more round of training would push the bank's cumulative ε past its target."""


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """The DP-SGD settings of a round policy, as one bank applies them.

    Parameters
    ----------
    target_epsilon : the ε the *whole planned training* may spend (all ``planned_rounds``);
        ``None`` with ``noise_multiplier=None`` means no DP at all.
    delta : the δ of the guarantee; must be below ``1 / n_samples`` (checked at training).
    max_grad_norm : per-sample clipping bound C (L2 norm over all parameters).
    noise_multiplier : sigma (noise std is ``sigma · C``). ``None``: derived from
        ``target_epsilon`` for the planned steps. ``0`` clips without noise and so gives
        ε = ∞: only for tests and ablations.
    planned_rounds, local_epochs, batch_size : the training the budget is planned for;
        a round is ``local_epochs`` passes of Poisson-sampled batches of expected size
        ``batch_size``.
    """

    target_epsilon: float | None
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    planned_rounds: int = 1
    local_epochs: int = 1
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.target_epsilon is not None and not (
            math.isfinite(self.target_epsilon) and self.target_epsilon > 0
        ):
            raise ValueError(
                f"target_epsilon must be a positive finite number or None, "
                f"got {self.target_epsilon!r}"
            )
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must lie in (0, 1), got {self.delta!r}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm!r}")
        if self.noise_multiplier is not None and not (
            math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0
        ):
            raise ValueError(
                f"noise_multiplier must be >= 0 or None (derived), got {self.noise_multiplier!r}"
            )
        for name in ("planned_rounds", "local_epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def enabled(self) -> bool:
        """Whether this config asks for DP-SGD at all."""
        return self.target_epsilon is not None or self.noise_multiplier is not None

    def check_sample_count(self, n_samples: int) -> None:
        """Refuse a δ that is not below ``1 / n_samples``.

        With δ ≥ 1/n a mechanism that publishes one random row outright is (0, δ)-DP, so
        such a guarantee promises nothing.
        """
        if n_samples < 1:
            raise ValueError("DP training needs at least one training row")
        if self.delta >= 1 / n_samples:
            raise ValueError(
                f"delta={self.delta:g} must be below 1/n_samples = 1/{n_samples} = "
                f"{1 / n_samples:.3g}; choose a smaller delta (1/(10 n) is common)"
            )

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any]) -> DPConfig:
        """Build the config from a round-policy snapshot.

        Reads ``dp_target_epsilon``, ``dp_delta``, ``dp_max_grad_norm``,
        ``dp_noise_multiplier`` (all optional; absent target and multiplier mean no DP)
        and plans the budget over ``max_rounds`` rounds of ``local_epochs`` with
        ``batch_size``.
        """
        defaults = cls(target_epsilon=None)
        return cls(
            target_epsilon=_optional_float(policy.get("dp_target_epsilon")),
            delta=float(policy.get("dp_delta", defaults.delta)),
            max_grad_norm=float(policy.get("dp_max_grad_norm", defaults.max_grad_norm)),
            noise_multiplier=_optional_float(policy.get("dp_noise_multiplier")),
            planned_rounds=int(policy["max_rounds"]),
            local_epochs=int(policy["local_epochs"]),
            batch_size=int(policy["batch_size"]),
        )


@dataclass(frozen=True)
class RoundPlan:
    """One bank's DP-SGD round as Opacus will run and account it."""

    noise_multiplier: float
    sample_rate: float  # the rate the accountant is charged (see `poisson_schedule`)
    steps: int  # optimizer steps in the round (epochs x steps per epoch)


def poisson_schedule(n_samples: int, batch_size: int) -> tuple[float, int]:
    """``(sample_rate, steps_per_epoch)`` exactly as Opacus's `PrivacyEngine` accounts them.

    `make_private` turns a loader of ``k = ceil(n / batch_size)`` batches into a Poisson
    loader with rate ``1/k`` and ``int(1 / (1/k))`` steps, then charges the accountant
    ``1 / steps`` per step. In floating point ``int(1 / (1/k))`` is ``k - 1`` for some k
    (93, 99, ...), so the arithmetic is mirrored here rather than simplified.
    """
    if n_samples < 1 or batch_size < 1:
        raise ValueError("n_samples and batch_size must be positive")
    loader_batches = math.ceil(n_samples / batch_size)
    steps = int(1 / (1 / loader_batches))
    return 1 / steps, steps


def noise_multiplier_for(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    total_steps: int,
    accountant: str = ACCOUNTANT,
) -> float:
    """The noise multiplier with which ``total_steps`` steps spend at most ``target_epsilon``.

    Opacus's own binary search (`opacus.accountants.utils.get_noise_multiplier`): the
    returned sigma gives ε in ``[target - 0.01, target]`` for the whole planned training.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return _noise_multiplier(
        float(target_epsilon), float(delta), float(sample_rate), int(total_steps), accountant
    )


@functools.lru_cache(maxsize=64)
def _noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, total_steps: int, accountant: str
) -> float:
    # The search takes about a second; a node asks for the same sigma several times a round.
    with quiet_opacus():
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=total_steps,
                accountant=accountant,
                epsilon_tolerance=EPSILON_TOLERANCE,
            )
        )


def plan_round(dp: DPConfig, n_samples: int) -> RoundPlan:
    """Noise multiplier, accounted sample rate and steps of one round of ``n_samples`` rows."""
    if not dp.enabled:
        raise ValueError("DPConfig has neither target_epsilon nor noise_multiplier: no DP asked")
    sample_rate, per_epoch = poisson_schedule(n_samples, dp.batch_size)
    steps = dp.local_epochs * per_epoch
    sigma = dp.noise_multiplier
    if sigma is None:
        assert dp.target_epsilon is not None  # enabled without a multiplier
        sigma = noise_multiplier_for(
            dp.target_epsilon, dp.delta, sample_rate, dp.planned_rounds * steps
        )
    return RoundPlan(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps)


def epsilon_after(accountant_state: Mapping[str, Any] | None, delta: float) -> float:
    """Cumulative ε (at ``delta``) of everything recorded in ``accountant_state``; 0 if empty."""
    history = history_of(accountant_state)
    if not history:
        return 0.0
    return epsilon_of(history, delta)


def would_exceed(
    accountant_state: Mapping[str, Any] | None, dp: DPConfig, *, n_samples: int
) -> bool:
    """Whether training one more round (as `plan_round` plans it) would pass the target ε.

    Always False without a target. A node asks this before training and sits the round out
    when it is True, so it never overspends.
    """
    return exceeds_target(history_of(accountant_state), dp, plan_round(dp, n_samples))


def state_from_history(history: History) -> AccountantState:
    """The JSON-able accountant state for an Opacus RDP ``history``."""
    return {
        "format": STATE_FORMAT,
        "mechanism": ACCOUNTANT,
        "history": [[float(s), float(q), int(n)] for s, q, n in history],
    }


def record_gaussian_release(
    accountant_state: Mapping[str, Any] | None, noise_multiplier: float
) -> AccountantState:
    """``accountant_state`` after one release of the Gaussian mechanism outside DP-SGD.

    ``noise_multiplier`` is the noise's sigma over the release's L2 sensitivity to one
    training row (for a counterparty sketch round, one flow). Recorded as one step at
    sample rate 1, whose RDP is Opacus's ``alpha / (2 z^2)``, the Gaussian mechanism's own,
    so a bank's ε composes its sketch rounds with its DP-SGD rounds in one budget.
    """
    if not noise_multiplier > 0:
        raise ValueError(f"noise_multiplier must be positive (got {noise_multiplier})")
    plan = RoundPlan(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=1)
    return state_from_history(_with_round(history_of(accountant_state), plan))


def history_of(state: Mapping[str, Any] | None) -> History:
    """Check a stored accountant state and return its history as Opacus's tuples."""
    if not state:
        return []
    if state.get("format") != STATE_FORMAT or state.get("mechanism") != ACCOUNTANT:
        raise ValueError(
            f"accountant state must have format {STATE_FORMAT!r} and mechanism "
            f"{ACCOUNTANT!r}, got {state.get('format')!r} / {state.get('mechanism')!r}"
        )
    history: History = []
    for entry in state.get("history", []):
        if not _valid_entry(entry):
            raise ValueError(
                f"malformed accountant history entry {entry!r}; expected "
                "[noise_multiplier >= 0, 0 < sample_rate <= 1, steps >= 1]"
            )
        history.append((float(entry[0]), float(entry[1]), int(entry[2])))
    return history


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, list | tuple) or len(entry) != 3:
        return False
    sigma, rate, steps = entry
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in entry)
    return (
        numbers
        and isinstance(steps, int)
        and math.isfinite(sigma)
        and sigma >= 0
        and 0 < rate <= 1
        and steps >= 1
    )


def exceeds_target(history: History, dp: DPConfig, plan: RoundPlan) -> bool:
    """Whether ``history`` plus the round ``plan`` spends more than ``dp``'s target ε."""
    if dp.target_epsilon is None:
        return False
    return epsilon_of(_with_round(history, plan), dp.delta) > dp.target_epsilon


def _with_round(history: History, plan: RoundPlan) -> History:
    """``history`` after one more round, merged as `RDPAccountant.step` merges steps."""
    if history and history[-1][:2] == (plan.noise_multiplier, plan.sample_rate):
        sigma, rate, steps = history[-1]
        return [*history[:-1], (sigma, rate, steps + plan.steps)]
    return [*history, (plan.noise_multiplier, plan.sample_rate, plan.steps)]


def epsilon_of(history: History, delta: float) -> float:
    """Opacus's RDP ε at ``delta`` for a non-empty ``history``."""
    accountant = RDPAccountant()
    accountant.history = list(history)
    with quiet_opacus():
        return float(accountant.get_epsilon(delta=delta))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@contextmanager
def quiet_opacus() -> Iterator[None]:
    """Silence the Opacus warnings this package has already answered (reasons below)."""
    with warnings.catch_warnings():
        # Said once, in the module docstring: torchcsprng does not exist for our torch.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        # Inputs never require grad; the full backward hooks still see what they need.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        # At very large or small ε the best RDP order is at the end of Opacus's default
        # range: the ε reported is then a valid, slightly loose (conservative) bound.
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        yield
