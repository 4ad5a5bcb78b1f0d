"""Pure CKKS crypto for the consortium: parameters, keys, wire format, validation, sums.

Nothing here imports Django, torch or any other package of ours; the portal and the
bank node both build on it.
"""

from he.errors import HEError, SecretKeyPresent, UpdateInvalid
from he.params import CkksParams

__all__ = ["CkksParams", "HEError", "SecretKeyPresent", "UpdateInvalid"]
