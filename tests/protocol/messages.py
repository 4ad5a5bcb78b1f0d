"""Well-formed wire messages, as the portal sends them, for tests to start from."""

from __future__ import annotations

from typing import Any

from protocol import default_ckks_params, default_model_spec


def policy_dict(**overrides: Any) -> dict[str, Any]:
    """A policy snapshot as ``RoundPolicy.snapshot()`` stores it (DP off)."""
    return {
        "name": "baseline",
        "version": 1,
        "model_spec": default_model_spec(),
        "n_features": 12,
        "vector_length": 970,
        "local_epochs": 2,
        "batch_size": 256,
        "learning_rate": 0.001,
        "fedprox_mu": 0.0,
        "min_banks": 3,
        "deadline_seconds": 1800,
        "max_rounds": 10,
        "ckks_params": default_ckks_params(),
        "normalize_features": True,
        "dp_target_epsilon": None,
        "dp_delta": 1e-05,
        "dp_max_grad_norm": 1.0,
        "dp_noise_multiplier": None,
        "secure_aggregation": "v2",
        "aggregate_checkers": 0,
        "max_bank_share": None,
        "update_clip_norm": None,
        "gate_tolerance": None,
        "gate_alert_rate": 0.01,
        "server_optimizer": "fedavg",
        "server_lr": 1.0,
        "server_momentum": 0.9,
        "server_beta1": 0.9,
        "server_beta2": 0.99,
        "server_tau": 0.001,
        "feature_set": "aml-v1",
        "counterparty_sketch": None,
    } | overrides


def sketch_dict(**overrides: Any) -> dict[str, Any]:
    """A counterparty sketch spec (protocol.SketchSpec) small enough for tests."""
    return {
        "as_of": ["2022-09-08", "2022-09-11"],
        "window_days": 30,
        "label_delay_days": 0,
        "depth": 2,
        "width": 64,
        "epsilon": 1.0,
        "delta": 1e-06,
    } | overrides


def manifest_dict(**overrides: Any) -> dict[str, Any]:
    return {
        "round": 4,
        "key_epoch": "ab" * 32,
        "aggregate_digest": "cd" * 32,
        "inputs": [
            {
                "bank": "alpha",
                "digest": "01" * 32,
                "signature": "c2ln",
                "epsilon": 1.5,
                "budget_left": True,
            },
            {
                "bank": "beta",
                "digest": "02" * 32,
                "signature": "c2ln",
                "epsilon": None,
                "budget_left": None,
            },
        ],
    } | overrides


def round_dict(**overrides: Any) -> dict[str, Any]:
    """An open training round as ``GET /api/v1/rounds/current`` returns it."""
    return {
        "number": 4,
        "kind": "training",
        "vector_length": 970,
        "stats_round": 1,
        "state": "open",
        "policy": policy_dict(),
        "key_epoch": "ab" * 32,
        "base_round": 3,
        "base_key_epoch": "ab" * 32,
        "opened_at": "2026-12-01T15:00:00.123456Z",
        "deadline_at": "2026-12-01T15:30:00.123456Z",
        "aggregating_at": None,
        "closed_at": None,
        "failure_reason": "",
        "aggregate_digest": "",
        "aggregate_size": None,
        "manifest": {},
        "submissions": 1,
    } | overrides
