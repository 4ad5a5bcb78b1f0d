"""What the scoring-service tests share: a saved model, a node config with [serve], a service."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bank_node.baseline import default_policy, save_model
from bank_node.feature_store import SqliteStore
from bank_node.serve import ModelHolder, Response, ScoringService
from bank_node.training import Normalizer
from he.codec import TRAILER_SLOTS
from models.feature_sets import feature_set as registered_set
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector, vector_length

TOKEN = "test-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
N = len(FEATURE_NAMES)


def save_test_model(
    directory: Path, *, threshold: float = 0.5, seed: int = 0, feature_set: str = "aml-v1"
) -> Path:
    """A model in the node's format: untrained weights, normalised features, a threshold."""
    width = registered_set(feature_set).n_features
    policy = default_policy()
    if feature_set != policy.feature_set:
        net = build_model(policy.model_spec, width)
        policy = dataclasses.replace(
            policy,
            feature_set=feature_set,
            n_features=width,
            vector_length=vector_length(net) + TRAILER_SLOTS,
        )
    torch.manual_seed(seed)  # the same weights for the same seed
    weights = model_to_vector(build_model(policy.model_spec, width))
    moments = np.concatenate([np.full(width, 0.3), np.full(width, 0.5)])
    save_model(directory, weights, policy, threshold, Normalizer.from_moments(moments, 1, rows=9))
    return directory


def make_service(
    tmp_path: Path,
    *,
    model: bool = True,
    max_batch: int = 1000,
    token: str = TOKEN,
    feature_set: str = "aml-v1",
    threshold: float = 0.5,
) -> ScoringService:
    model_dir = tmp_path / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    if model:
        save_test_model(model_dir, feature_set=feature_set, threshold=threshold)
    holder = ModelHolder(model_dir)
    holder.load()
    store = SqliteStore(tmp_path / "state" / "accounts.sqlite3")
    return ScoringService(models=holder, store=store, token=token, max_batch=max_batch)


def transaction(minute: int = 0, **changes: Any) -> dict[str, Any]:
    """One transaction as a caller sends it (the normalised frame's fields)."""
    base = {
        "timestamp": f"2022/09/01 10:{minute:02d}", "from_bank": "011", "from_account": "A1",
        "to_bank": "022", "to_account": "B7", "amount_received": 950.0, "amount_paid": 1000.0,
        "receiving_currency": "Euro", "payment_currency": "US Dollar", "payment_format": "Wire",
    }  # fmt: skip
    return {**base, **changes}


def post(service: ScoringService, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {**(AUTH if headers is None else headers), "content-length": str(len(body))}
    return service.handle("POST", "/score", sent, lambda n: body[:n])


def answer(response: Response) -> dict[str, Any]:
    return dict(json.loads(response.body))


def write_node_config(tmp_path: Path, data_file: Path, *, model_dir: Path | None = None) -> Path:
    """A node.toml whose [serve] table has a token file (and the model directory, if given)."""
    (tmp_path / "credential").write_text("not-a-real-credential")
    (tmp_path / "serve.token").write_text(TOKEN + "\n")
    model_line = f'model_dir = "{model_dir}"\n' if model_dir is not None else ""
    path = tmp_path / "node.toml"
    path.write_text(
        'portal_url = "http://127.0.0.1:9"\nbank = "alpha"\ncredential_file = "credential"\n'
        'signing_key_file = "signing.key"\nsecret_context_file = "consortium.secret"\n'
        f'ckks_params_file = "ckks_params.json"\ndata_file = "{data_file}"\n'
        'state_dir = "state"\n\n[serve]\ntoken_file = "serve.token"\n' + model_line
    )
    return path
