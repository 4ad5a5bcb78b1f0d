"""Flatten a torch module's weights to one float64 vector and back (the unit of aggregation)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    """Parameters in ``named_parameters()`` order, then buffers (none for our MLP)."""
    return [p for _, p in module.named_parameters()] + [b for _, b in module.named_buffers()]


def vector_length(module: nn.Module) -> int:
    """Number of values `model_to_vector` produces for ``module``."""
    return sum(t.numel() for t in _tensors(module))


def model_to_vector(module: nn.Module) -> np.ndarray:
    """All parameters (then buffers) flattened into one float64 array."""
    parts = [t.detach().cpu().reshape(-1).to(torch.float64).numpy() for t in _tensors(module)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def vector_to_model(module: nn.Module, vec: np.ndarray) -> None:
    """Load a vector made by `model_to_vector` (e.g. an averaged one) into ``module`` in place.

    Raises
    ------
    ValueError
        If ``vec`` is not one-dimensional, has the wrong length for ``module``, or holds
        NaN/inf (a sign of a failed decryption or a mismatched aggregate).
    """
    values = np.asarray(vec, dtype=np.float64)
    expected = vector_length(module)
    if values.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got shape {values.shape}")
    if values.size != expected:
        raise ValueError(
            f"vector has {values.size} values but {type(module).__name__} has {expected} "
            "parameters; was it built from the same model spec and feature count?"
        )
    if not np.isfinite(values).all():
        raise ValueError("vector contains NaN or infinite values")
    offset = 0
    with torch.no_grad():
        for tensor in _tensors(module):
            chunk = torch.from_numpy(values[offset : offset + tensor.numel()])
            tensor.copy_(chunk.view_as(tensor).to(tensor.dtype))
            offset += tensor.numel()
