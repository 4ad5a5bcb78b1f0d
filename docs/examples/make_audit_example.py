"""Regenerate the example audit reports in this folder from a short, real portal history.

    .venv/bin/python docs/examples/make_audit_example.py

A throwaway portal (SQLite and keys in a temporary directory) runs: a key epoch, a
policy with differential privacy (target epsilon 8 per bank), three banks with Ed25519
keys, one refused upload, round 1 published from three real CKKS updates, metrics
reported, round 2 failed at its deadline, an auditor account and two sign-in attempts.
Then the three banks found a signed roster (genesis), admit a fourth bank with two of
three approvals and its own signature, and one bank sends a signed objection. Then it
exports the trail once as an evidence pack (audit-evidence-pack.zip), writes its JSON,
CSV and PDF beside it and the portal's public key, so that

    cd docs/examples
    python -m audit.verify audit-report.json --public-key portal.pub
    python -m audit.verify audit-evidence-pack.zip --public-key portal.pub

check the committed example offline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import shutil
import sys
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _setup(work: Path) -> None:
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("CONSORTIUM_PORTAL_SIGNING_KEY_FILE", None)
    os.environ["CONSORTIUM_VAR_DIR"] = str(work)
    os.environ["DJANGO_SETTINGS_MODULE"] = "consortium.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _upload(rnd, bank, key, secret, params, fp, seed, epsilon=None):  # type: ignore[no-untyped-def]
    import numpy as np

    from consortium.rounds import storage
    from consortium.rounds.services import update_precheck, update_submit
    from he.codec import TRAILER_SLOTS, encrypt_vector, pack_update
    from he.signing import sign, update_message
    from protocol import PrivacyClaim

    weights = np.random.default_rng(seed).normal(0, 0.3, rnd.vector_length - TRAILER_SLOTS)
    buf = io.BytesIO()
    encrypt_vector(secret, pack_update(weights, 100 + seed, 1.5), params, fp, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    signature = sign(key, update_message(rnd.number, bank.slug, digest))
    update_precheck(rnd=rnd, bank=bank, digest=digest, signature=signature)
    path = storage.temp_path()
    path.write_bytes(body)
    update_submit(
        rnd=rnd,
        bank=bank,
        body_path=path,
        digest=digest,
        signature=signature,
        privacy=PrivacyClaim(epsilon=epsilon, budget_left=True),
    )


def _history() -> None:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from audit.context import acting_as
    from consortium.api.errors import ApplicationError, refusal_record
    from consortium.members.services import bank_create
    from consortium.rounds.selectors import round_in_flight
    from consortium.rounds.services import (
        key_epoch_register,
        metrics_report,
        policy_create,
        scheduler_tick,
    )
    from he.keys import fingerprint, generate_secret_context, public_context_bytes
    from he.params import CkksParams
    from he.signing import public_key_b64, signing_key_new

    params = CkksParams()
    secret = generate_secret_context(params)
    public = public_context_bytes(secret)
    with acting_as("cli:setup"):
        operator = User.objects.create_user("olivia", password=secrets.token_urlsafe(16))
        operator.groups.add(Group.objects.get_or_create(name="operators")[0])
    key_epoch_register(public_context=public, ckks_params=params.to_dict(), actor="user:olivia")
    policy_create(
        name="fraud-mlp",
        actor="user:olivia",
        activate=True,
        min_banks=3,
        deadline=timedelta(minutes=30),
        max_rounds=3,
        normalize_features=False,
        dp_target_epsilon=8.0,
        dp_delta=1e-5,
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
    )
    banks = {}
    for slug in ("alpha", "beta", "gamma"):
        key = signing_key_new()
        bank, _ = bank_create(
            slug=slug,
            name=f"{slug.title()} Bank",
            actor="user:olivia",
            signing_public_key=public_key_b64(key),
        )
        banks[slug] = (bank, key)
    scheduler_tick()
    first = round_in_flight()
    assert first is not None
    try:  # signed with a key the bank never registered: refused, and recorded
        bank, key = banks["beta"]
        _upload(first, bank, signing_key_new(), secret, params, fingerprint(public), 9, 2.0)
    except ApplicationError as exc:  # recorded as the API's error handler would
        refusal_record(exc)
    for seed, (bank, key) in enumerate(banks.values()):
        _upload(first, bank, key, secret, params, fingerprint(public), seed, 2.0 + seed / 4)
    scheduler_tick()
    first.refresh_from_db()
    metrics_report(
        rnd=first, bank=banks["alpha"][0], metrics={"auprc": 0.41, "recall_at_1pct": 0.62}
    )
    second = round_in_flight()
    assert second is not None
    _upload(second, *banks["gamma"], secret, params, fingerprint(public), 7, 3.9)
    scheduler_tick(second.deadline_at + timedelta(seconds=1))
    with acting_as("cli:setup"):
        password = secrets.token_urlsafe(16)
        auditor = User.objects.create_user("audrey", password=password, is_staff=True)
        auditor.groups.add(Group.objects.get(name="auditors"))
    browser = Client(HTTP_HOST="127.0.0.1")
    for attempt in ("not her password", password):
        browser.post("/admin/login/", {"username": "audrey", "password": attempt})
    _roster(banks, fingerprint(public))


def _sign_pending(keys: dict, number: int) -> None:  # type: ignore[type-arg]
    from consortium.governance.selectors import roster_version_get, signed_version
    from consortium.governance.services import roster_version_sign
    from governance import sign_version

    for slug, key in keys.items():
        row = roster_version_get(number)
        assert row is not None
        signature = sign_version(signed_version(row), slug, key)
        roster_version_sign(number=number, bank_slug=slug, signature=signature)


def _roster(banks: dict, epoch: str) -> None:  # type: ignore[type-arg]
    """The founding ceremony, one admission, and an objection, through the services."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from django.utils import timezone

    from consortium.governance.models import RosterVersion
    from consortium.governance.services import (
        objection_record,
        roster_change_propose,
        roster_genesis_propose,
    )
    from governance import (
        Charter,
        Member,
        Objection,
        PrivacyFloor,
        Rule,
        genesis_version,
        public_key_b64,
        sign_objection,
    )
    from he.signing import signing_key_new

    def member(slug: str, key) -> Member:  # type: ignore[no-untyped-def]
        raw = (
            X25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        agreement = base64.b64encode(raw).decode()
        return Member(slug, f"{slug.title()} Bank", public_key_b64(key), agreement)

    now = timezone.now().replace(microsecond=0).isoformat()
    charter = Charter(
        consortium_id="example",
        members=tuple(member(slug, key) for slug, (_, key) in banks.items()),
        rule=Rule(2, 3, 2),
        min_banks=3,
        key_epochs=(epoch,),
        privacy=PrivacyFloor(dp_required=True, epsilon_ceiling=8.0),
    )
    genesis = genesis_version(charter, now).to_dict()
    roster_genesis_propose(version_json=genesis, actor="user:olivia")
    _sign_pending({slug: key for slug, (_, key) in banks.items()}, 0)
    delta = signing_key_new()
    change = {"kind": "admit_bank", "member": member("delta", delta).to_dict()}
    roster_change_propose(change=change, actor="user:olivia")
    _sign_pending({"delta": delta, "alpha": banks["alpha"][1], "beta": banks["beta"][1]}, 1)
    assert RosterVersion.objects.get(number=1).status == "in_force"
    bank, key = banks["gamma"]
    objection = Objection(
        "example",
        3,
        "gamma",
        "policy_not_approved",
        "round 3's policy fraud-mlp v1 is not approved in the banks' roster",
        now,
    )
    objection_record(
        bank=bank, objection_json=objection.to_dict(), signature=sign_objection(objection, key)
    )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="audit-example-"))
    try:
        _setup(work)
        _history()
        from audit.report import Selection
        from consortium.audit_api.services import audit_report_export

        # One snapshot: the evidence pack, and its three files beside it to read.
        export = audit_report_export(selection=Selection(), fmt="zip", actor="cli:example")
        (HERE / "audit-evidence-pack.zip").write_bytes(export.content)
        with zipfile.ZipFile(io.BytesIO(export.content)) as pack:
            for fmt in ("json", "csv", "pdf"):
                (HERE / f"audit-report.{fmt}").write_bytes(pack.read(f"report.{fmt}"))
        from audit.portal_key import portal_public_key

        (HERE / "portal.pub").write_text(portal_public_key() + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
