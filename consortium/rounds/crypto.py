"""The portal's view of the consortium key: public contexts only, cached per process."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from he.keys import load_public_context
from he.params import CkksParams

if TYPE_CHECKING:
    import tenseal as ts

    from consortium.rounds.models import KeyEpoch


@functools.lru_cache(maxsize=8)
def _context(fingerprint: str, data: bytes, params: CkksParams) -> ts.Context:
    # load_public_context refuses any context carrying a secret key, so the portal
    # process can never hold one, whatever is in its database.
    return load_public_context(data, params)


def epoch_params(epoch: KeyEpoch) -> CkksParams:
    return CkksParams.from_dict(epoch.ckks_params)


def epoch_context(epoch: KeyEpoch) -> ts.Context:
    return _context(epoch.fingerprint, bytes(epoch.public_context), epoch_params(epoch))
