"""The one error class of the governance library, carrying a reason a person can act on."""

from __future__ import annotations


class RosterError(ValueError):
    """A roster version, field, cohort or objection is refused.

    ``reason`` says exactly why; ``version`` is the roster version number concerned (when
    there is one) and ``code`` a short machine-readable tag for logs and metrics.
    """

    def __init__(self, reason: str, *, version: int | None = None, code: str = "invalid") -> None:
        self.reason = reason
        self.version = version
        self.code = code
        prefix = f"roster version {version}: " if version is not None else ""
        super().__init__(prefix + reason)

    def at_version(self, version: int) -> RosterError:
        """The same refusal, now naming the version it concerns."""
        return RosterError(self.reason, version=version, code=self.code)
