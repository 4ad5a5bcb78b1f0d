"""DP-SGD training of one round with Opacus: the training loop, per-sample losses, FedProx.

The budget it spends is planned and accounted in `models.dp_budget`; what the guarantee
covers is in `models.privacy`'s docstring.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.validators import ModuleValidator
from torch.utils.data import DataLoader, TensorDataset

from models.data import as_training_arrays
from models.dp_budget import (
    ACCOUNTANT,
    AccountantState,
    DPConfig,
    PrivacyBudgetExceeded,
    epsilon_after,
    epsilon_of,
    exceeds_target,
    history_of,
    plan_round,
    quiet_opacus,
    state_from_history,
)
from models.nets import FraudMLP


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
    history = history_of(accountant_state)
    plan = plan_round(dp, n_samples)
    if exceeds_target(history, dp, plan):
        spent = epsilon_of(history, dp.delta) if history else 0.0
        raise PrivacyBudgetExceeded(
            f"one more round would take epsilon from {spent:.3f} past the target "
            f"{dp.target_epsilon}; this bank has spent its budget"
        )
    ModuleValidator.validate(model.net, strict=True)
    sampling_seed, noise_seed = (
        (secrets.randbits(63), secrets.randbits(63)) if seed is None else (seed, seed + 1)
    )
    with torch.random.fork_rng(devices=[]), quiet_opacus():
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
