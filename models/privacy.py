"""Record-level differential privacy: DP-SGD with Opacus, and an RDP budget kept across rounds.

A bank trains once per round, each time in a fresh process state, so the privacy it has
spent lives outside the process: `train_local_dp` takes the accountant state the previous
round returned and hands back the new one, a JSON-able dict holding Opacus's RDP history
(one ``[noise_multiplier, sample_rate, steps]`` triple per change of mechanism). The ε it
reports is always cumulative over every round so far; all accounting is Opacus's own.

What the guarantee covers, honestly:

- (ε, δ)-DP with respect to adding or removing one of the bank's training rows, for the
  weights the bank releases, composed over the rounds it took part in (Poisson sampling,
  per-sample clipping, Gaussian noise, RDP accountant).
- Not the sample count ``n_k`` the bank sends next to its weights: it changes by one when
  a row is added or removed and is released exactly (encrypted, but it is in the sum every
  member decrypts). A bank that wants it covered too should weight by a public or
  coarsened count.
- The noise and the Poisson batches come from torch's PRNG seeded from the OS (or from a
  caller's seed in tests), not from a cryptographic generator: Opacus's ``secure_mode``
  needs ``torchcsprng``, which does not exist for the torch we pin. Whoever learns the
  seed can subtract the noise, so production callers must pass ``seed=None``.
"""

from __future__ import annotations

import functools
import math
import secrets
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.validators import ModuleValidator
from torch.utils.data import DataLoader, TensorDataset

from models.data import as_training_arrays
from models.nets import FraudMLP

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
    with _quiet_opacus():
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
    history = _history(accountant_state)
    if not history:
        return 0.0
    return _epsilon(history, delta)


def would_exceed(
    accountant_state: Mapping[str, Any] | None, dp: DPConfig, *, n_samples: int
) -> bool:
    """Whether training one more round (as `plan_round` plans it) would pass the target ε.

    Always False without a target. A node asks this before training and sits the round out
    when it is True, so it never overspends.
    """
    return _exceeds(_history(accountant_state), dp, plan_round(dp, n_samples))


def train_local_dp(
    model: FraudMLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int | None,
    dp: DPConfig,
    accountant_state: Mapping[str, Any] | None,
) -> tuple[int, float, AccountantState]:
    """Train ``model`` in place with DP-SGD for one round; return (rows, cumulative ε, state).

    A plain torch loop rather than a Lightning `Trainer`: Opacus has to own the optimizer
    step and the data loader, which Lightning would hide. Per step: a Poisson batch,
    per-sample gradients (Opacus hooks on ``model.net``), flat clipping to
    ``dp.max_grad_norm``, Gaussian noise, the model's own Adam (``configure_optimizers``,
    with ``lr``).

    The loss is the model's weighted BCE or focal loss per row, averaged over the batch.
    It differs from `FraudMLP._loss`, which divides by the batch's summed weights: that
    couples each row's gradient to the other rows', so it is not a per-sample gradient.

    FedProx: the proximal term ``mu/2 ||w - w_global||^2`` depends on no row, so its
    gradient is added *after* clipping and noising. Put into the per-sample gradients it
    would be clipped with them and shrink as the batch grows, for no privacy gain;
    added afterwards it is post-processing of public values and costs no ε.

    ``seed`` fixes the Poisson batches and the noise (tests, benchmarks); ``None`` draws
    both from the OS and is what a node must use (see the module docstring). Hooks and
    Opacus's attributes are removed afterwards: ``model`` is the same plain module, its
    parameters updated in place, ready for `model_to_vector`.

    Raises
    ------
    ValueError
        If ``dp`` asks for no DP, disagrees with ``epochs``/``batch_size``, or its δ is
        not below ``1 / n``; `PrivacyBudgetExceeded` if this round would pass the target.
    opacus.validators.errors.UnsupportedModuleError
        If the model has layers Opacus cannot compute per-sample gradients for.
    """
    if not dp.enabled:
        raise ValueError("dp asks for no privacy; train with models.training.train_local")
    if (epochs, batch_size) != (dp.local_epochs, dp.batch_size):
        raise ValueError(
            f"epochs={epochs}, batch_size={batch_size} differ from the DPConfig's "
            f"local_epochs={dp.local_epochs}, batch_size={dp.batch_size} the budget is planned for"
        )
    features, labels = as_training_arrays(x_train, y_train)
    n_samples = len(features)
    dp.check_sample_count(n_samples)
    history = _history(accountant_state)
    plan = plan_round(dp, n_samples)
    if _exceeds(history, dp, plan):
        spent = _epsilon(history, dp.delta) if history else 0.0
        raise PrivacyBudgetExceeded(
            f"one more round would take epsilon from {spent:.3f} past the target "
            f"{dp.target_epsilon}; this bank has spent its budget"
        )
    ModuleValidator.validate(model.net, strict=True)
    sampling_seed, noise_seed = (
        (secrets.randbits(63), secrets.randbits(63)) if seed is None else (seed, seed + 1)
    )
    with torch.random.fork_rng(devices=[]), _quiet_opacus():
        engine = PrivacyEngine(accountant=ACCOUNTANT)
        if history:
            engine.accountant.load_state_dict({"history": history, "mechanism": ACCOUNTANT})
        loader = DataLoader(
            TensorDataset(torch.from_numpy(features), torch.from_numpy(labels)),
            batch_size=batch_size,
            generator=torch.Generator().manual_seed(sampling_seed),
        )
        optimizer = model.configure_optimizers()
        for group in optimizer.param_groups:
            group["lr"] = lr
        hooks, dp_optimizer, dp_loader = engine.make_private(
            module=model.net,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
            noise_generator=torch.Generator().manual_seed(noise_seed),
            wrap_model=False,  # hooks on model.net itself: no wrapper to strip afterwards
        )
        try:
            _dp_epochs(model, dp_optimizer, dp_loader, epochs)
        finally:
            hooks.cleanup()
            for param in model.parameters():
                if hasattr(param, "summed_grad"):
                    del param.summed_grad
            model.zero_grad(set_to_none=True)
    state = state_from_history(engine.accountant.history)
    return n_samples, epsilon_after(state, dp.delta), state


def state_from_history(history: History) -> AccountantState:
    """The JSON-able accountant state for an Opacus RDP ``history``."""
    return {
        "format": STATE_FORMAT,
        "mechanism": ACCOUNTANT,
        "history": [[float(s), float(q), int(n)] for s, q, n in history],
    }


def _dp_epochs(model: FraudMLP, optimizer: Any, loader: DataLoader, epochs: int) -> None:
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            # Mean over the batch's actual rows: Opacus's hooks multiply back by it, so each
            # row's per-sample gradient is exactly the gradient of its own loss.
            loss = _per_sample_loss(model, model(x), y).sum() / max(len(y), 1)
            loss.backward()
            if optimizer.pre_step():  # clip, add noise, average, charge the accountant
                _add_proximal_gradient(model)
                optimizer.original_optimizer.step()


def _per_sample_loss(model: FraudMLP, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`FraudMLP._loss` row by row: weighted BCE, or focal loss, without batch normalisation."""
    weight = torch.where(y > 0.5, float(model.hparams["pos_weight"]), 1.0)
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if model.hparams["loss"] == "focal":
        p_true = torch.exp(-loss)
        loss = loss * (1 - p_true) ** float(model.hparams["focal_gamma"])
    return weight * loss


def _add_proximal_gradient(model: FraudMLP) -> None:
    # The model's own FedProx term (one definition of it), differentiated on its own.
    proximal = model._proximal_term()
    if not proximal.requires_grad:  # mu == 0 or no reference set
        return
    params = list(model.parameters())
    for param, grad in zip(params, torch.autograd.grad(proximal, params), strict=True):
        assert param.grad is not None  # set by the DP optimizer's pre_step
        param.grad.add_(grad)


def _history(state: Mapping[str, Any] | None) -> History:
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


def _exceeds(history: History, dp: DPConfig, plan: RoundPlan) -> bool:
    if dp.target_epsilon is None:
        return False
    return _epsilon(_with_round(history, plan), dp.delta) > dp.target_epsilon


def _with_round(history: History, plan: RoundPlan) -> History:
    """``history`` after one more round, merged as `RDPAccountant.step` merges steps."""
    if history and history[-1][:2] == (plan.noise_multiplier, plan.sample_rate):
        sigma, rate, steps = history[-1]
        return [*history[:-1], (sigma, rate, steps + plan.steps)]
    return [*history, (plan.noise_multiplier, plan.sample_rate, plan.steps)]


def _epsilon(history: History, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = list(history)
    with _quiet_opacus():
        return float(accountant.get_epsilon(delta=delta))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@contextmanager
def _quiet_opacus() -> Iterator[None]:
    with warnings.catch_warnings():
        # Said once, in the module docstring: torchcsprng does not exist for our torch.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        # Inputs never require grad; the full backward hooks still see what they need.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        # At very large or small ε the best RDP order is at the end of Opacus's default
        # range: the ε reported is then a valid, slightly loose (conservative) bound.
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        yield
