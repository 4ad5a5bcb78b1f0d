"""Writes for key epochs: register the consortium's public CKKS context."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from audit.services import audit_record
from consortium.api.errors import ApplicationError, Conflict
from consortium.governance import selectors as roster
from consortium.rounds.models import KeyEpoch
from he.errors import HEError, SecretKeyPresent
from he.keys import fingerprint as context_fingerprint
from he.keys import load_public_context
from he.params import CkksParams


@transaction.atomic
def key_epoch_register(
    *, public_context: bytes, ckks_params: dict[str, Any], actor: str
) -> KeyEpoch:
    """Store a new consortium public context; refuse anything carrying a secret key."""
    try:
        params = CkksParams.from_dict(ckks_params)
        load_public_context(public_context, params)
    except SecretKeyPresent as exc:
        raise ApplicationError(str(exc)) from exc
    except HEError as exc:
        raise ApplicationError(f"public context refused: {exc}") from exc
    fp = context_fingerprint(public_context)
    if refusal := roster.key_epoch_refusal(fp):  # roster: only an epoch the banks put in force
        raise Conflict(refusal).audited(
            action="key_epoch.refused", actor=actor, data={"fingerprint": fp}
        )
    if KeyEpoch.objects.filter(fingerprint=fp).exists():
        raise Conflict(f"key epoch {fp[:16]}... is already registered")
    last = KeyEpoch.objects.select_for_update().aggregate(n=Max("number"))["n"] or 0
    KeyEpoch.objects.filter(active=True).update(active=False)
    epoch = KeyEpoch.objects.create(
        number=last + 1,
        fingerprint=fp,
        ckks_params=params.to_dict(),
        public_context=public_context,
        created_by=actor,
    )
    audit_record(
        action="key_epoch.registered",
        actor=actor,
        target=epoch,
        data={"number": epoch.number, "fingerprint": fp, "ckks_params": epoch.ckks_params},
    )
    return epoch
