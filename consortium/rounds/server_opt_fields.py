"""The round policy's server-optimiser fields (``models.server_opt``), apart from models.py.

An abstract model ``RoundPolicy`` inherits: models.py is at its size limit. The ranges are
checked once, by ``protocol.PolicySnapshot`` (``policy_create`` builds the snapshot before it
saves), so the API, the portal's form and a policy file refuse the same values in the same
words, naming the field.
"""

from __future__ import annotations

from django.db import models

from protocol import SERVER_OPT_DEFAULTS, SERVER_OPTIMIZERS

OPTIMIZER_CHOICES = [
    ("fedavg", "FedAvg: the average itself"),
    ("fedavgm", "FedAvgM: server momentum"),
    ("fedadam", "FedAdam (Reddi et al. 2021)"),
    ("fedyogi", "FedYogi (Reddi et al. 2021)"),
    ("feddyn", "FedDyn (Acar et al. 2021): alpha = FedProx mu"),
]
assert tuple(name for name, _ in OPTIMIZER_CHOICES) == SERVER_OPTIMIZERS


class ServerOptimizerFields(models.Model):
    """What every node does with the decrypted average before it becomes the round's model."""

    server_optimizer = models.CharField(
        max_length=10,
        choices=OPTIMIZER_CHOICES,
        default=SERVER_OPT_DEFAULTS["server_optimizer"],
        help_text="Applied by every node to the decrypted average; fedavg = today's model.",
    )
    server_lr = models.FloatField(
        default=SERVER_OPT_DEFAULTS["server_lr"], help_text="Server learning rate, in (0, 10]."
    )
    server_momentum = models.FloatField(
        default=SERVER_OPT_DEFAULTS["server_momentum"], help_text="FedAvgM's momentum, in [0, 1)."
    )
    server_beta1 = models.FloatField(
        default=SERVER_OPT_DEFAULTS["server_beta1"],
        help_text="FedAdam/FedYogi first-moment decay, in [0, 1).",
    )
    server_beta2 = models.FloatField(
        default=SERVER_OPT_DEFAULTS["server_beta2"],
        help_text="FedAdam/FedYogi second-moment decay, in [0, 1).",
    )
    server_tau = models.FloatField(
        default=SERVER_OPT_DEFAULTS["server_tau"],
        help_text="FedAdam/FedYogi adaptivity (added to the root of the second moment), in (0, 1].",
    )

    class Meta:
        abstract = True
