"""The round policy's counterparty-sketch field (``protocol.SketchSpec``), apart from models.py.

An abstract model ``RoundPolicy`` inherits: models.py is at its size limit. The spec's
values are checked once, by ``protocol.PolicySnapshot`` (``policy_create`` builds the
snapshot before it saves), so the API, a policy file and the admin refuse the same values
in the same words, naming the field.
"""

from __future__ import annotations

from django.db import models

from he.codec import TRAILER_SLOTS
from protocol import SketchSpec


class CounterpartySketchFields(models.Model):
    """Whether rounds under the policy start with a sketch round, and the sketch it sums."""

    counterparty_sketch = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text="Cross-bank counterparty sketches (docs/threat-model.md): as_of dates, "
        "window_days, label_delay_days, depth, width, epsilon, delta, and optionally "
        "noise_split (how many banks' noise makes up the guarantee; 1 by default); "
        "empty = off.",
    )

    class Meta:
        abstract = True

    @property
    def sketch_spec(self) -> SketchSpec | None:
        """The checked spec (ProtocolError on a bad one), or None when sketches are off."""
        raw = self.counterparty_sketch
        return SketchSpec.from_dict(raw) if raw is not None else None

    @property
    def sketch_vector_length(self) -> int | None:
        """A sketch update: every sketch's values, then the count and tag slots."""
        spec = self.sketch_spec
        return spec.values + TRAILER_SLOTS if spec is not None else None
