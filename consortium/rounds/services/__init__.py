"""Writes for policies, key epochs, rounds, submissions, secagg and metrics, one module each.

Each function is one domain operation in one transaction, with its audit event. State
transitions lock the round row first. The names below are re-exported so callers keep
importing ``from consortium.rounds.services import x``.
"""

from consortium.rounds.services.blobs import blob_open
from consortium.rounds.services.halts import consortium_state_record
from consortium.rounds.services.key_epochs import key_epoch_register
from consortium.rounds.services.metric_reports import metrics_report
from consortium.rounds.services.policies import (
    CIPHERTEXT_BYTES_PER_VALUE,
    POLICY_FIELDS,
    policy_activate,
    policy_create,
    policy_new_version,
    policy_preview,
    policy_preview_version,
)
from consortium.rounds.services.scheduler import (
    round_aggregate,
    round_close_due,
    round_open,
    round_open_next,
    scheduler_tick,
)
from consortium.rounds.services.secagg import mask_key_submit, reveal_submit
from consortium.rounds.services.submissions import (
    submission_create,
    update_precheck,
    update_submit,
)

__all__ = [
    "CIPHERTEXT_BYTES_PER_VALUE",
    "POLICY_FIELDS",
    "blob_open",
    "consortium_state_record",
    "key_epoch_register",
    "mask_key_submit",
    "metrics_report",
    "policy_activate",
    "policy_create",
    "policy_new_version",
    "policy_preview",
    "policy_preview_version",
    "reveal_submit",
    "round_aggregate",
    "round_close_due",
    "round_open",
    "round_open_next",
    "scheduler_tick",
    "submission_create",
    "update_precheck",
    "update_submit",
]
