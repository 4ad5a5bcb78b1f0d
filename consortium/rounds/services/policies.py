"""Writes for round policies: create a version, copy it into a new one, activate it."""

from __future__ import annotations

import itertools
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from audit.services import audit_record
from consortium.api.errors import ApplicationError, Conflict
from consortium.governance import selectors as roster
from consortium.rounds.models import POLICY_FIELDS, RoundPolicy
from consortium.rounds.services.sketch_rounds import sketch_fits_check
from he.codec import TRAILER_SLOTS
from he.errors import HEError
from he.params import CkksParams
from models.counterparty_sketch import sketch_feature_count
from models.feature_sets import FEATURE_SETS
from protocol import DEFAULT_FEATURE_SET, ProtocolError

# An encrypted value costs at least 32 bytes on the wire (2 x 8-byte coefficients per
# slot and data prime); a model whose update cannot fit the upload limit is refused before
# it is built (a hostile spec of huge layers would otherwise exhaust the worker's memory).
CIPHERTEXT_BYTES_PER_VALUE = 32


def _model_vector_length(spec: dict[str, Any], n_features: int) -> int:
    # Imported here: only policy creation needs torch, not every portal request.
    from models.nets import build_model
    from models.vector import vector_length

    if not isinstance(spec, dict):
        raise ApplicationError(
            'model_spec must be an object, e.g. {"kind": "mlp", "hidden": [32, 16], "seed": 1}'
        )
    hidden = spec.get("hidden", [])
    if not isinstance(hidden, list) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
    ):
        raise ApplicationError("model_spec.hidden must be a list of positive layer widths")
    widths = [n_features, *hidden, 1]
    rough = sum(a * b + b for a, b in itertools.pairwise(widths))
    limit = settings.MAX_UPLOAD_BYTES // CIPHERTEXT_BYTES_PER_VALUE
    if rough > limit:
        raise ApplicationError(
            f"model_spec has about {rough} parameters; an encrypted update of more than "
            f"{limit} does not fit the {settings.MAX_UPLOAD_BYTES}-byte upload limit"
        )
    try:
        # + the count slot and the integrity slot (he.codec.TRAILER_SLOTS)
        return vector_length(build_model(spec, n_features)) + TRAILER_SLOTS
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ApplicationError(f"model_spec is not a model we can build: {exc}") from exc


def _n_features(feature_set: str, given: int | None) -> int:
    """The feature set's width; a 400 names ``feature_set`` (unknown) or ``n_features`` (other)."""
    spec = FEATURE_SETS.get(feature_set)
    if spec is None:
        problem = f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}"
        raise ApplicationError(f"feature_set: {problem}", fields={"feature_set": [problem]})
    if given is not None and given != spec.n_features:
        problem = (
            f"feature set {feature_set!r} computes {spec.n_features} features, not {given}; "
            "leave n_features out (the portal derives it) or choose the matching feature_set"
        )
        raise ApplicationError(f"n_features: {problem}", fields={"n_features": [problem]})
    return spec.n_features


def _policy_n_features(policy: RoundPolicy, given: int | None) -> int:
    """The feature set's width, plus the cross-bank sketch's columns when it is on; one
    ``given`` that differs is refused (400 naming ``n_features``) rather than ignored."""
    feature_set = policy.feature_set or DEFAULT_FEATURE_SET
    if policy.counterparty_sketch is None:
        return _n_features(feature_set, given)
    width = _n_features(feature_set, None) + sketch_feature_count(policy.counterparty_sketch)
    if given is not None and given != width:
        problem = (
            f"feature set {feature_set!r} with cross-bank sketch features computes {width} "
            f"features, not {given}; leave n_features out (the portal derives it)"
        )
        raise ApplicationError(f"n_features: {problem}", fields={"n_features": [problem]})
    return width


def _policy_build(
    *, name: str, version: int, actor: str, n_features: int | None = None, **fields: Any
) -> RoundPolicy:
    """An unsaved version with every rule checked: the fields' own, the model's size, the
    wire's rules across fields. Raises ``ApplicationError`` naming the field.

    ``n_features`` is derived from the policy's ``feature_set`` (and its cross-bank sketch);
    one given that differs from it is refused rather than ignored.
    """
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ApplicationError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    try:
        CkksParams.from_dict(fields.get("ckks_params") or RoundPolicy().ckks_params)
    except HEError as exc:
        raise ApplicationError(f"ckks_params: {exc}", fields={"ckks_params": [str(exc)]}) from exc
    policy = RoundPolicy(name=name, version=version, created_by=actor, **fields)
    policy.n_features = _policy_n_features(policy, n_features)
    try:
        policy.vector_length = _model_vector_length(policy.model_spec, policy.n_features)
    except ApplicationError as exc:  # name the field, so that a form shows it there
        raise ApplicationError(exc.message, fields={"model_spec": [exc.message]}) from exc
    try:
        policy.full_clean()
    except ValidationError as exc:
        raise ApplicationError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()),
            fields=exc.message_dict,
        ) from exc
    try:  # the wire's own rules across fields, e.g. a share cap needs a statistics round
        policy.as_snapshot()
    except ProtocolError as exc:
        raise ApplicationError(str(exc), fields={exc.field: [exc.problem]}) from exc
    sketch_fits_check(policy.sketch_spec)
    return policy


def _next_version(name: str, *, lock: bool) -> int:
    versions = RoundPolicy.objects.filter(name=name)
    if lock:  # two operators saving a version of one name at once must not share a number
        versions = versions.select_for_update()
    return (versions.aggregate(v=Max("version"))["v"] or 0) + 1


def policy_preview(*, name: str, actor: str, **fields: Any) -> RoundPolicy:
    """The version ``policy_create`` would save, checked the same way but not saved: what a
    confirmation page compares with the version it replaces."""
    return _policy_build(name=name, version=_next_version(name, lock=False), actor=actor, **fields)


def policy_preview_version(*, base: RoundPolicy, actor: str, **changes: Any) -> RoundPolicy:
    """``policy_preview`` of ``base`` with ``changes``, as ``policy_new_version`` copies it."""
    fields = {f: getattr(base, f) for f in POLICY_FIELDS}
    fields.update(changes)
    return policy_preview(name=base.name, actor=actor, **fields)


@transaction.atomic
def policy_create(*, name: str, actor: str, activate: bool = False, **fields: Any) -> RoundPolicy:
    """Create the next version of policy ``name`` (version 1 if new)."""
    version = _next_version(name, lock=True)
    policy = _policy_build(name=name, version=version, actor=actor, **fields)
    policy.save()
    audit_record(action="policy.created", actor=actor, target=policy, data=policy.snapshot())
    if activate:
        policy_activate(policy=policy, actor=actor)
    return policy


@transaction.atomic
def policy_new_version(*, base: RoundPolicy, actor: str, **changes: Any) -> RoundPolicy:
    """Copy ``base`` with ``changes`` into a new version; ``base`` itself is never edited."""
    fields = {f: getattr(base, f) for f in POLICY_FIELDS}
    fields.update(changes)
    # roster: a new version needs the banks' approval first, so it starts inactive
    activate = base.active and roster.roster_state() is None
    return policy_create(name=base.name, actor=actor, activate=activate, **fields)


@transaction.atomic
def policy_activate(*, policy: RoundPolicy, actor: str) -> RoundPolicy:
    """Make ``policy`` the one the scheduler follows; every other version is deactivated."""
    if refusal := roster.policy_refusal(policy):  # roster: only a policy the banks approved
        raise Conflict(refusal).audited(
            action="policy.activation_refused",
            actor=actor,
            target=policy,
            data={"name": policy.name, "version": policy.version},
        )
    RoundPolicy.objects.exclude(pk=policy.pk).filter(active=True).update(active=False)
    RoundPolicy.objects.filter(pk=policy.pk).update(active=True)
    policy.active = True
    audit_record(action="policy.activated", actor=actor, target=policy)
    return policy
