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

The code lives in two modules, re-exported here so callers import from ``models.privacy``:
`models.dp_budget` (the policy's DP settings, round plans and the accountant state) and
`models.dp_training` (the Opacus training loop).
"""

from models.dp_budget import (
    ACCOUNTANT,
    EPSILON_TOLERANCE,
    STATE_FORMAT,
    AccountantState,
    DPConfig,
    History,
    PrivacyBudgetExceeded,
    RoundPlan,
    epsilon_after,
    noise_multiplier_for,
    plan_round,
    poisson_schedule,
    record_gaussian_release,
    state_from_history,
    would_exceed,
)
from models.dp_training import train_local_dp

__all__ = [
    "ACCOUNTANT",
    "EPSILON_TOLERANCE",
    "STATE_FORMAT",
    "AccountantState",
    "DPConfig",
    "History",
    "PrivacyBudgetExceeded",
    "RoundPlan",
    "epsilon_after",
    "noise_multiplier_for",
    "plan_round",
    "poisson_schedule",
    "record_gaussian_release",
    "state_from_history",
    "train_local_dp",
    "would_exceed",
]
