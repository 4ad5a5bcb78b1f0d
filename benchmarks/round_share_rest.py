"""``round_share.py``'s timing of the rest of a node's round: check, decrypt, evaluate.

Besides training and encrypting its own update, a node under secure aggregation v2 does
three more pieces of work every training round, each sized by the update:

- **T_check**: recompute the published aggregate from the survivors' signed uploads and
  the revealed correction (``bank_node.secagg_record.recompute_aggregate`` runs
  ``he.seeded.sum_vectors2`` over them, then compares digests). Every node does it when
  the policy's ``aggregate_checkers`` is 0, as in the demo; with k checkers a node does it
  with probability k / inputs. Downloading the uploads is not counted (network).
- **T_decrypt**: decrypt the aggregate (``he.seeded.decrypt_vector2``).
- **T_eval**: evaluate the published model on the bank's validation and test splits
  (``bank_node.training.evaluate``, as the node reports it to the portal).

The uploads are real masked v2 containers from a cohort of ``banks`` whose masks cancel,
and the decrypted sum is checked against the plain sum, so the timed work is the real one.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from round_share_common import CLOCKS, FIRST_TRAINING_ROUND, Clock, Crypto, Timing, median_timing

from bank_node.training import LocalData, evaluate, model_from_vector
from he.codec import TRAILER_SLOTS, pack_update
from he.masking import MaskTerm, RoundBinding, pairwise_terms
from he.seeded import decrypt_vector2, encrypt_vector2, masker_for, sum_vectors2
from protocol import PolicySnapshot

# The decrypted sum must match the plain sum this closely, or the timing was of garbage.
MAX_RELATIVE_ERROR = 1e-6


@dataclass(frozen=True)
class RestResult:
    """The node's per-round work beyond training and encryption, at one update size."""

    values: int
    banks: int
    t_check: Timing
    t_decrypt: Timing
    t_eval: Timing

    def total(self, clock: Clock) -> float:
        return self.t_check.on(clock) + self.t_decrypt.on(clock) + self.t_eval.on(clock)


def _cohort_terms(banks: int, binding: RoundBinding) -> list[list[MaskTerm]]:
    """Each bank's masks: pairwise towards the other ``banks - 1`` plus its self-mask."""
    keys = {f"bank-{i:03d}": X25519PrivateKey.generate() for i in range(banks)}
    publics = {bank: key.public_key() for bank, key in keys.items()}
    return [
        [*pairwise_terms(key, bank, publics, binding), MaskTerm(bank, os.urandom(32), 1)]
        for bank, key in sorted(keys.items())
    ]


def revealed_self_masks(terms: list[list[MaskTerm]]) -> list[MaskTerm]:
    """The correction once every bank survived: minus each bank's revealed self-mask."""
    return [MaskTerm(t[-1].peer, t[-1].seed, -1) for t in terms]


def time_rest(
    crypto: Crypto,
    data: LocalData,
    policy: PolicySnapshot,
    length: int,
    banks: int,
    repeats: int,
) -> RestResult:
    """T_check, T_decrypt and T_eval for an aggregate of ``banks`` uploads of ``length``."""
    binding = RoundBinding("benchmark", FIRST_TRAINING_ROUND, crypto.fingerprint)
    terms = _cohort_terms(banks, binding)
    rng = np.random.default_rng(1)
    plain = [pack_update(rng.normal(0, 0.1, length - TRAILER_SLOTS), 100 + k, 1.5) for k in (0, 1)]
    revealed = revealed_self_masks(terms)
    model = model_from_vector(policy.model_spec, policy.n_features, None)
    with tempfile.TemporaryDirectory(prefix="round-share-rest-") as tmp:
        work = Path(tmp)
        paths = [work / f"upload-{k:03d}.ckks2" for k in range(banks)]
        for k, path in enumerate(paths):
            with open(path, "wb") as out:
                masker = masker_for(crypto.kit, terms[k], binding)
                encrypt_vector2(crypto.kit, plain[k % 2], crypto.fingerprint, out, masker)
        aggregate = work / "aggregate.ckks2"

        def check() -> None:
            with open(aggregate, "wb") as out:
                sum_vectors2(paths, crypto.kit, out, masker_for(crypto.kit, revealed, binding))

        decrypted: list[np.ndarray] = []

        def decrypt() -> None:
            decrypted[:] = [decrypt_vector2(crypto.kit, io.BytesIO(aggregate.read_bytes()))]

        t_check = median_timing(check, repeats)
        t_decrypt = median_timing(decrypt, repeats)
    expected = plain[0] * ((banks + 1) // 2) + plain[1] * (banks // 2)
    error = float(np.linalg.norm(decrypted[0] - expected) / np.linalg.norm(expected))
    if not error <= MAX_RELATIVE_ERROR:
        raise RuntimeError(f"the decrypted aggregate is off by {error:.1e}: masks did not cancel")
    t_eval = median_timing(lambda: evaluate(model, data), repeats)
    return RestResult(length, banks, t_check, t_decrypt, t_eval)


def whole_round_share(t_enc: float, t_train: float, rest: float) -> float:
    """Encryption's share of the node's whole round: ``T_enc / (T_train + T_enc + rest)``."""
    if min(t_enc, t_train, rest) < 0 or t_enc + t_train + rest == 0:
        raise ValueError("timings must be non-negative and not all zero")
    return t_enc / (t_train + t_enc + rest)


def rest_lines(rest: RestResult, t_train: Timing, encryptions: dict[str, Timing]) -> list[str]:
    """The rest of the round, and each encryption's share of the whole round, per clock."""
    lines = [
        "",
        f"the rest of the node's round at {rest.values:,} values ({rest.banks} uploads): "
        "T_check = recompute the aggregate, T_decrypt, T_eval = evaluate the published model",
        f"  {'clock':<5} {'T_check':>8} {'T_decrypt':>9} {'T_eval':>7} {'T_train':>8} "
        + " ".join(f"{'share ' + name:>18}" for name in encryptions),
    ]
    for c in CLOCKS:
        clock = c
        shares = [
            whole_round_share(t.on(c), t_train.on(c), rest.total(c)) for t in encryptions.values()
        ]
        lines.append(
            f"  {clock:<5} {rest.t_check.on(c):>7.3f}s {rest.t_decrypt.on(c):>8.3f}s "
            f"{rest.t_eval.on(c):>6.3f}s {t_train.on(c):>7.3f}s "
            + " ".join(f"{s:>18.2%}" for s in shares)
        )
    return lines
