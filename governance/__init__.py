"""The banks' signed charter and roster: pure data model, encoding and verification.

Standard library and ``cryptography`` only; the portal stores and relays versions, the
bank node verifies them, and neither can make a version valid without the banks' keys.
"""

from governance.changes import (
    AdmitBank,
    ApprovePolicy,
    Change,
    ChangeMinBanks,
    ChangePrivacyFloor,
    ChangeRule,
    Genesis,
    RegisterKeyEpoch,
    ReinstateBank,
    RetireKeyEpoch,
    RevokeBank,
    RotateBankKeys,
    SuspendBank,
    change_from_dict,
    change_to_dict,
)
from governance.charter import (
    Charter,
    Member,
    MemberStatus,
    PolicyApproval,
    PrivacyFloor,
    RosterState,
    Rule,
)
from governance.describe import describe
from governance.dispute import (
    Dispute,
    check_clearance,
    clearance_message,
    clearance_refusal,
    dispute_of,
    dispute_threshold,
    sign_clearance,
)
from governance.encoding import MIN_BANKS_FLOOR, ZERO_HASH, canonical_json, public_key_b64
from governance.errors import RosterError
from governance.founding import DEFAULT_RULE, genesis_draft
from governance.objection import Objection, sign_objection, verify_objection
from governance.verify import (
    Pending,
    apply,
    check_cohort,
    pending_approvals,
    verify_chain,
    verify_genesis,
)
from governance.version import (
    RosterVersion,
    genesis_version,
    next_version,
    parse_version_json,
    roster_message,
    sign_version,
    version_hash,
)

__all__ = [
    "DEFAULT_RULE",
    "MIN_BANKS_FLOOR",
    "ZERO_HASH",
    "AdmitBank",
    "ApprovePolicy",
    "Change",
    "ChangeMinBanks",
    "ChangePrivacyFloor",
    "ChangeRule",
    "Charter",
    "Dispute",
    "Genesis",
    "Member",
    "MemberStatus",
    "Objection",
    "Pending",
    "PolicyApproval",
    "PrivacyFloor",
    "RegisterKeyEpoch",
    "ReinstateBank",
    "RetireKeyEpoch",
    "RevokeBank",
    "RosterError",
    "RosterState",
    "RosterVersion",
    "RotateBankKeys",
    "Rule",
    "SuspendBank",
    "apply",
    "canonical_json",
    "change_from_dict",
    "change_to_dict",
    "check_clearance",
    "check_cohort",
    "clearance_message",
    "clearance_refusal",
    "describe",
    "dispute_of",
    "dispute_threshold",
    "genesis_draft",
    "genesis_version",
    "next_version",
    "parse_version_json",
    "pending_approvals",
    "public_key_b64",
    "roster_message",
    "sign_clearance",
    "sign_objection",
    "sign_version",
    "verify_chain",
    "verify_genesis",
    "verify_objection",
    "version_hash",
]
