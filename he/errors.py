"""Exceptions raised by the crypto package, each carrying a message a person can act on."""


class HEError(Exception):
    """Base class for every error of the crypto package."""


class SecretKeyPresent(HEError):
    """A context meant to be public carries a secret key."""


class UpdateInvalid(HEError):
    """An encrypted vector failed validation; the message says which check failed."""
