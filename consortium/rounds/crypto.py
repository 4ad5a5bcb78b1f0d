"""The portal's view of the consortium key: public contexts only, cached per process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tenseal as ts

from he.keys import load_public_context
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal

if TYPE_CHECKING:
    from consortium.rounds.models import KeyEpoch


_CACHE_SIZE = 8
_contexts: dict[str, ts.Context] = {}


def epoch_params(epoch: KeyEpoch) -> CkksParams:
    return CkksParams.from_dict(epoch.ckks_params)


def epoch_context(epoch: KeyEpoch) -> ts.Context:
    """The epoch's public context, parsed once per process.

    Keyed by fingerprint (the SHA-256 of the stored bytes, unique per epoch), so a cached
    context costs no read of the ~230 KB column: round queries leave it deferred.
    """
    ctx = _contexts.get(epoch.fingerprint)
    if ctx is None:
        # load_public_context refuses any context carrying a secret key, so the portal
        # process can never hold one, whatever is in its database.
        ctx = load_public_context(bytes(epoch.public_context), epoch_params(epoch))
        if len(_contexts) >= _CACHE_SIZE:
            _contexts.pop(next(iter(_contexts)))
        _contexts[epoch.fingerprint] = ctx
    return ctx


def epoch_kit(epoch: KeyEpoch) -> SealKit:
    """SEAL objects over the epoch's public context (v2 validation and sums).

    A new kit per call: a kit is not thread-safe (its scratch file), the context it wraps is
    the cached one.
    """
    return kit_from_tenseal(epoch_context(epoch), epoch_params(epoch))
