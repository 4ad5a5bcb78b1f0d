"""The one error a malformed message raises, naming the field at fault."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message does not have its declared shape.

    ``field`` is the dotted path of the offending field (``policy.dp_delta``,
    ``inputs[2].digest``), or the message's name when the whole value is wrong.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
