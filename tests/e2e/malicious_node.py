"""A test-only malicious bank node: the real agent, corrupting its training uploads on a plan.

``python -m tests.e2e.malicious_node --config node.toml --plan honest,count_x1000,...`` runs
``bank_node.agent.Agent`` as ``bank-node run`` does, except that the n-th *published*
training round this bank uploaded to is played in the plan's n-th mode (a round that
failed does not use up its mode; past the plan's end the bank is honest). Each attacked
round and its mode are written to ``<state_dir>/attacks.json`` for the test to read.
Everything malicious lives here, under tests/: the product's code is unchanged.

Modes (issue 13, "Proof"): ``count_x1000`` and ``negative_count`` (the count slot, and the
weights packed with it, times 1000 or -1000), ``foreign_key`` (the masked update encrypted
under a key of the attacker's own ceremony), ``random_coefficients`` (uniform words added to
every ciphertext), ``overflow`` (every value 2^31, past what the data prime holds once
summed), ``scaled_x100`` (the step from the base times 100), ``sign_flip`` (the step reversed and,
under a clip norm, stretched to it: the strongest reversal the bound admits),
``label_flip`` (trained on flipped labels).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from bank_node.agent import Agent
from bank_node.aggregate_guard import initial_weights
from bank_node.cli import _keeper, node_keyring
from bank_node.config import NodeConfig, load_config
from bank_node.keys import Keyring
from bank_node.portal_client import BankClient
from bank_node.roster import RosterKeeper
from bank_node.training import LocalData
from he.codec import TRAILER_SLOTS
from he.integrity import tag_value
from he.keys import generate_secret_context
from he.ring import SealKit, add_to_first_polynomial, kit_from_tenseal
from he.seeded import max_chunk_bytes2
from he.wire import HashingReader, HashingWriter
from he.wire2 import iter_chunks2, read_header2, write_header
from protocol import CohortKeys, PolicySnapshot, PrivacyClaim, RoundInfo

MODES = ("count_x1000", "negative_count", "foreign_key", "random_coefficients", "overflow",
         "scaled_x100", "sign_flip", "label_flip")  # fmt: skip
HONEST = "honest"
COUNT_FACTOR = {"count_x1000": 1000.0, "negative_count": -1000.0}
STEP_FACTOR = {"scaled_x100": 100.0, "sign_flip": -1.0}
# Above the 2^30 a 60-bit data prime surely holds at scale 2^28, below what SEAL's encoder
# refuses: one upload alone wraps the sum modulo q.
OVERFLOW_VALUE = 2.0**31


class MaliciousAgent(Agent):
    """The real agent with a plan of attacks; ``mode`` is set while it takes part in a round."""

    def __init__(
        self,
        config: NodeConfig,
        keys: Keyring,
        client: BankClient,
        keeper: RosterKeeper | None,
        plan: list[str],
    ) -> None:
        super().__init__(config, keys, client, keeper)
        self.plan = plan
        self.mode = HONEST
        self.rng = np.random.default_rng(13)
        self.foreign: SealKit | None = None
        self.log_path = self.config.state_dir / "attacks.json"

    # --- choosing the mode -----------------------------------------------------------

    def participate(self, rnd: RoundInfo) -> bool:
        if str(rnd.number) in self.state.submitted or not rnd.is_training:
            return super().participate(rnd)
        self.mode = self.mode_for(rnd)
        if self.mode != HONEST:
            logging.getLogger("malicious_node").warning(
                "round %s: attacking: %s", rnd.number, self.mode
            )
        try:
            done = super().participate(rnd)
        finally:
            mode, self.mode = self.mode, HONEST
        if done:
            log = json.loads(self.log_path.read_text()) if self.log_path.exists() else {}
            log[str(rnd.number)] = mode
            self.log_path.write_text(json.dumps(log, indent=1))
        return done

    def mode_for(self, rnd: RoundInfo) -> str:
        """The plan's mode for the next published training round this bank uploads to."""
        published = 0
        for number in self.state.submitted:
            info = self.client.round(int(number))
            published += int(info.is_training and info.state == "published")
        return self.plan[published] if published < len(self.plan) else HONEST

    # --- corrupting the update ---------------------------------------------------------

    def data(self, policy: PolicySnapshot) -> LocalData:
        data = super().data(policy)
        if self.mode != "label_flip":
            return data
        return dataclasses.replace(data, y_train=1.0 - data.y_train)

    def local_update(self, rnd: RoundInfo) -> tuple[np.ndarray, int, PrivacyClaim | None]:
        weights, n, privacy = super().local_update(rnd)
        factor = STEP_FACTOR.get(self.mode)
        if factor is None:
            return weights, n, privacy
        base = self.base_weights(rnd)
        if base is None:
            base = initial_weights(rnd.number, rnd.policy.model_spec, rnd.policy.n_features)
        step = weights - base
        clip, norm = rnd.policy.update_clip_norm, float(np.linalg.norm(step))
        if self.mode == "sign_flip" and clip is not None and norm > 0:
            factor = -clip / norm
        return base + factor * step, n, privacy

    def pack(self, rnd: RoundInfo, weights: np.ndarray, n: int) -> np.ndarray:
        if self.mode == "overflow":
            return np.resize([OVERFLOW_VALUE, -OVERFLOW_VALUE], weights.size + TRAILER_SLOTS)
        factor = COUNT_FACTOR.get(self.mode)
        if factor is None:
            return super().pack(rnd, weights, n)
        keys = self.keys
        tag = tag_value(keys.integrity_key, keys.fingerprint, rnd.number, self.config.bank)
        count = factor * n / self.count_unit(rnd)  # no headroom check: that is the attack
        return np.concatenate([np.asarray(weights, dtype=np.float64) * count, [count, tag]])

    def encrypt(
        self, rnd: RoundInfo, values: np.ndarray, cohort: CohortKeys | None = None
    ) -> tuple[str, Path]:
        if self.mode == "foreign_key":
            return self.encrypt_foreign(rnd, values, cohort)
        digest, path = super().encrypt(rnd, values, cohort)
        if self.mode == "random_coefficients":
            digest = randomise(self.secagg.kit(rnd.key_epoch), path, self.rng)
        return digest, path

    def encrypt_foreign(
        self, rnd: RoundInfo, values: np.ndarray, cohort: CohortKeys | None
    ) -> tuple[str, Path]:
        """The masked update, encrypted under a secret key of the attacker's own ceremony."""
        own = self.secagg.kit(rnd.key_epoch)
        if self.foreign is None:
            self.foreign = kit_from_tenseal(generate_secret_context(own.params), own.params)
        kits = self.secagg._kits
        kits[rnd.key_epoch] = self.foreign
        try:
            return super().encrypt(rnd, values, cohort)
        finally:
            kits[rnd.key_epoch] = own


def randomise(kit: SealKit, path: Path, rng: np.random.Generator) -> str:
    """Add uniform words modulo each prime to every ciphertext of a v2 container; new digest."""
    with open(path, "rb") as stream:
        reader = HashingReader(stream)
        header = read_header2(reader)
        limit = max_chunk_bytes2(kit.params, seeded=header.seeded)
        chunks = list(iter_chunks2(reader, header, limit))
    out = io.BytesIO()
    writer = HashingWriter(out)
    write_header(writer, header)
    for raw in chunks:
        words = rng.integers(0, kit.modulus_column, dtype=np.uint64)
        noisy = add_to_first_polynomial(kit, raw, words)
        assert noisy is not None, "not a seeded SEAL ciphertext at the first data level"
        writer.write_chunk(noisy)
    path.write_bytes(out.getvalue())
    return writer.hexdigest()


def agent(config_path: Path, plan: list[str]) -> MaliciousAgent:
    """Built as ``bank_node.cli.agent_from_config`` builds the real one."""
    config = load_config(config_path)
    torch.set_num_threads(max(1, config.torch_threads))
    keys: Keyring = node_keyring(config)
    client = BankClient(config.portal_url, config.credential,
                        timeout=config.request_timeout_seconds, max_retries=config.max_retries)  # fmt: skip
    return MaliciousAgent(config, keys, client, _keeper(config, keys, client), plan=plan)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--plan", required=True, help=f"comma-separated: {HONEST} or {MODES}")
    args = p.parse_args(argv)
    plan = args.plan.split(",")
    unknown = set(plan) - {HONEST, *MODES}
    if unknown:
        p.error(f"unknown mode(s): {sorted(unknown)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    agent(Path(args.config), plan).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
