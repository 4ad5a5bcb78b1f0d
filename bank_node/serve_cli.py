"""`bank-node serve`: real-time scoring over HTTP with the promoted model (docs/serving.md)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from bank_node.config import ConfigError, NodeConfig, load_config

log = logging.getLogger("bank_node.serve")

STATE_FILE = Path("serve") / "accounts.sqlite3"  # inside state_dir: the account history


def read_token(config: NodeConfig) -> str:
    """The bearer token of ``serve.token_file``; a ConfigError says what to put where."""
    path = config.serve.token_file
    if path is None:
        raise ConfigError(
            "serve.token_file is not set: bank-node serve answers only callers presenting a "
            "bearer token; put a long random one (e.g. `openssl rand -hex 32`) in a 0600 file "
            "and set [serve] token_file to it"
        )
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"serve.token_file: cannot read {path}: {exc.strerror}") from exc
    if len(token) < 16:
        raise ConfigError(f"serve.token_file: {path} holds {len(token)} characters; use 16+")
    return token


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model and the account state, then answer until SIGTERM."""
    import torch

    from bank_node.feature_store import SqliteStore, StoreError
    from bank_node.serve import ModelHolder, ScoringService
    from bank_node.serve_http import make_server, serve_forever
    from bank_node.sketch_scoring import node_sketch_source

    config = load_config(Path(args.config))
    serve = config.serve
    token = read_token(config)
    torch.set_num_threads(max(1, config.torch_threads))
    model_dir = Path(args.model) if args.model else (serve.model_dir or config.state_dir)
    models = ModelHolder(model_dir, node_sketch_source(config))
    models.load()  # without a model it still starts, unready, and loads one when it appears
    try:
        store = SqliteStore(config.state_dir / STATE_FILE)
    except StoreError as exc:
        raise ConfigError(str(exc)) from exc
    service = ScoringService(models=models, store=store, token=token, max_batch=serve.max_batch)
    host = args.host or serve.host
    server = make_server(service, host, serve.port if args.port is None else args.port)
    bound = server.server_address[1]
    print(
        json.dumps(
            {
                "listening": f"http://{host}:{bound}",
                "model_dir": str(model_dir),
                "model_loaded": models.model is not None,
            }
        ),
        flush=True,
    )
    serve_forever(server)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="score transactions in real time over HTTP ([serve] table)")
    s.add_argument("--config", required=True, help="node configuration (TOML)")
    s.add_argument("--host", help="listen on this address (default: serve.host)")
    s.add_argument(
        "--port", type=int, help="listen on this port; 0: any free one (default: serve.port)"
    )
    s.add_argument(
        "--model",
        metavar="DIR",
        help="serve the model in DIR (default: "
        "serve.model_dir, else state_dir: the promoted model)",
    )
    s.set_defaults(func=cmd_serve)
