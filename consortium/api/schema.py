"""The OpenAPI schema's view inspector: drf-spectacular's, plus the headers our views read.

A POST wrapped by `consortium.api.idempotency.idempotent` takes an optional
``Idempotency-Key`` header; the generated schema says so on exactly those operations, so a
client generated from it can send the key.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter

from consortium.api.idempotency import HEADER, KEY_LENGTH

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name=HEADER,
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description=(
        f"A random key ({KEY_LENGTH[0]}-{KEY_LENGTH[1]} printable ASCII characters, e.g. a "
        "UUID), the same on every retry of one request: the first successful answer is "
        "kept for 24 hours per caller and a retry gets it again (header "
        "Idempotent-Replayed: true); the same key with another path or body is a 422."
    ),
)


class ConsortiumAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with ``Idempotency-Key`` on the idempotent POSTs."""

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        # The decorator sits on ``post``, or on ``create`` under DRF's generic views.
        handlers = (getattr(self.view, name, None) for name in ("post", "create"))
        if self.method == "POST" and any(getattr(h, "idempotent", False) for h in handlers):
            parameters.append(IDEMPOTENCY_PARAMETER)
        return parameters
