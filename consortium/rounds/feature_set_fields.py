"""The round policy's ``feature_set`` field (``models.feature_sets``), apart from models.py.

An abstract model ``RoundPolicy`` inherits: models.py is at its size limit. The set fixes
the policy's ``n_features`` (``policy_create`` derives it, and refuses a different one).
"""

from __future__ import annotations

from django.db import models

from models.feature_sets import FEATURE_SETS
from protocol import DEFAULT_FEATURE_SET

FEATURE_SET_CHOICES = [(s.name, f"{s.name}: {s.description}") for s in FEATURE_SETS.values()]


class FeatureSetFields(models.Model):
    """Which features every bank computes for the policy's model."""

    feature_set = models.CharField(
        max_length=32,
        choices=FEATURE_SET_CHOICES,
        default=DEFAULT_FEATURE_SET,
        help_text="The features every bank computes (docs/own-data.md, 'Feature sets'); "
        "it fixes n_features.",
    )

    class Meta:
        abstract = True
