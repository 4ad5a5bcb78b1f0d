"""A policy's counterparty sketch (protocol.SketchSpec) checked against the upload limit.

A policy with ``counterparty_sketch`` opens a sketch round before training (scheduler):
one encrypted, masked sum of every bank's noised sketches, decrypted only by the members.
"""

from __future__ import annotations

from django.conf import settings

from consortium.api.errors import ApplicationError
from he.codec import TRAILER_SLOTS
from protocol import SketchSpec

# An encrypted value costs at least 32 bytes on the wire (services.policies says why).
CIPHERTEXT_BYTES_PER_VALUE = 32


def sketch_fits_check(spec: SketchSpec | None) -> None:
    """Refuse (4xx) a sketch whose encrypted update would exceed the portal's upload limit."""
    if spec is None:
        return
    size = (spec.values + TRAILER_SLOTS) * CIPHERTEXT_BYTES_PER_VALUE
    if size > settings.MAX_UPLOAD_BYTES:
        raise ApplicationError(
            f"counterparty_sketch: an encrypted sketch update of about {size} bytes does not "
            f"fit the {settings.MAX_UPLOAD_BYTES}-byte upload limit; use fewer dates or cells",
            fields={"counterparty_sketch": ["too large for the upload limit"]},
        )
