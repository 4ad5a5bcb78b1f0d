"""The declared shapes of every message between the portal and a bank node (pure Python).

Both sides build and parse these frozen dataclasses instead of indexing raw dicts; a
malformed message raises ``ProtocolError`` naming the field. Imports only the standard
library and ``he`` (to validate CKKS parameters).
"""

from protocol.errors import ProtocolError
from protocol.members import BankInfo, KeyEpochInfo
from protocol.policy import (
    DEFAULT_CKKS_PARAMS,
    DEFAULT_FEATURE_SET,
    DEFAULT_GATE_ALERT_RATE,
    DEFAULT_MODEL_SPEC,
    DERIVED_POLICY_FIELDS,
    MIN_BANKS_FLOOR,
    MIN_BANKS_FLOOR_TEXT,
    POLICY_FIELDS,
    SERVER_OPT_DEFAULTS,
    SERVER_OPTIMIZERS,
    PolicySnapshot,
    default_ckks_params,
    default_model_spec,
    dp_enabled,
)
from protocol.rounds import (
    Manifest,
    ManifestInput,
    MetricsReceipt,
    PrivacyClaim,
    PrivacySpend,
    RoundInfo,
    RoundPage,
    UpdateReceipt,
)
from protocol.secagg import (
    DEFAULT_SECURE_AGGREGATION,
    SECURE_AGGREGATION_PROTOCOLS,
    AdvertisedKey,
    CohortKeys,
    MaskKeysPost,
    Reveal,
    SecAggRecord,
    UnmaskRequest,
    mask_keys_message,
    secagg_threshold,
)
from protocol.sketch import SketchSpec

__all__ = [
    "DEFAULT_CKKS_PARAMS",
    "DEFAULT_FEATURE_SET",
    "DEFAULT_GATE_ALERT_RATE",
    "DEFAULT_MODEL_SPEC",
    "DEFAULT_SECURE_AGGREGATION",
    "DERIVED_POLICY_FIELDS",
    "MIN_BANKS_FLOOR",
    "MIN_BANKS_FLOOR_TEXT",
    "POLICY_FIELDS",
    "SECURE_AGGREGATION_PROTOCOLS",
    "SERVER_OPTIMIZERS",
    "SERVER_OPT_DEFAULTS",
    "AdvertisedKey",
    "BankInfo",
    "CohortKeys",
    "KeyEpochInfo",
    "Manifest",
    "ManifestInput",
    "MaskKeysPost",
    "MetricsReceipt",
    "PolicySnapshot",
    "PrivacyClaim",
    "PrivacySpend",
    "ProtocolError",
    "Reveal",
    "RoundInfo",
    "RoundPage",
    "SecAggRecord",
    "SketchSpec",
    "UnmaskRequest",
    "UpdateReceipt",
    "default_ckks_params",
    "default_model_spec",
    "dp_enabled",
    "mask_keys_message",
    "secagg_threshold",
]
