"""The back office changes nothing by itself: every edit goes through the services, which
write the same audit events as the API, and a refusal is audited like one through the API."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audit.models import AuditEvent
from consortium.members.models import Bank, BankStatus
from consortium.rounds.models import KeyEpoch, RoundPolicy
from consortium.rounds.services import policy_create
from he.signing import public_key_b64
from tests.conftest import PARAMS, b64

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: Any) -> Client:
    """An operator who may use the back office, signed in as ``olivia``."""
    user = User.objects.create_user("olivia", password="operator-password-1", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="operators")[0])
    user.is_superuser = True  # the back office's model permissions
    user.save()
    client = Client()
    client.force_login(user)
    return client


def _events(action: str, actor: str = "user:olivia") -> list[tuple[str, str, dict[str, Any]]]:
    events = AuditEvent.objects.filter(action=action, actor=actor).order_by("seq")
    return [(e.actor, e.object_id, e.data) for e in events]


def _admin_action(client: Client, model: str, action: str, pk: int) -> Any:
    return client.post(
        f"/admin/{model}/",
        {"action": action, "_selected_action": [pk], "index": 0},
    )


def _basic() -> dict[str, str]:
    import base64

    token = base64.b64encode(b"olivia:operator-password-1").decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def test_a_status_change_in_the_admin_writes_the_event_the_api_writes(
    staff, client, bank_alpha, bank_beta
):
    assert _admin_action(staff, "members/bank", "suspend", bank_alpha.bank.pk).status_code == 302
    response = client.post("/api/v1/banks/beta/suspend", {}, "application/json", **_basic())
    assert response.status_code == 200
    assert Bank.objects.get(slug="alpha").status == BankStatus.SUSPENDED
    by_admin, by_api = _events("bank.suspended")
    assert by_admin == ("user:olivia", str(bank_alpha.bank.pk), by_api[2])
    assert by_api[:2] == ("user:olivia", str(bank_beta.bank.pk))


def test_a_signing_key_from_the_admin_is_rotated_by_the_service_and_audited(
    staff, client, bank_alpha, bank_beta
):
    keys = [public_key_b64(Ed25519PrivateKey.generate()) for _ in range(2)]
    url = f"/admin/members/bank/{bank_alpha.bank.pk}/change/"
    response = staff.post(url, {"name": "Alpha", "new_signing_public_key": keys[0]})
    assert response.status_code == 302, response.content[-2000:]
    response = client.put(
        "/api/v1/banks/beta/signing-key",
        {"public_key": keys[1]},
        content_type="application/json",
        **_basic(),
    )
    assert response.status_code == 200
    assert Bank.objects.get(slug="alpha").signing_public_key == keys[0]
    by_admin, by_api = _events("bank.signing_key_rotated")
    assert by_admin[2] == {"public_key": keys[0], "previous": public_key_b64(bank_alpha.key)}
    assert by_api[2] == {"public_key": keys[1], "previous": public_key_b64(bank_beta.key)}
    assert by_admin[0] == by_api[0] == "user:olivia"


def test_the_admin_cannot_set_what_the_services_own(staff, bank_alpha):
    url = f"/admin/members/bank/{bank_alpha.bank.pk}/change/"
    response = staff.post(
        url, {"name": "Renamed", "status": "revoked", "signing_public_key": "x", "slug": "evil"}
    )
    assert response.status_code == 302
    bank = Bank.objects.get(pk=bank_alpha.bank.pk)
    assert (bank.slug, bank.status, bank.name) == ("alpha", BankStatus.ACTIVE, "Renamed")
    assert bank.signing_public_key == public_key_b64(bank_alpha.key)
    assert _events("bank.renamed") == [
        ("user:olivia", str(bank.pk), {"from": "Alpha", "to": "Renamed"})
    ]


def test_a_policy_activation_from_the_admin_writes_the_event_the_api_writes(staff, client, policy):
    first = policy_create(name="other", actor="test", model_spec=policy.model_spec)
    second = policy_create(name="third", actor="test", model_spec=policy.model_spec)
    response = _admin_action(staff, "rounds/roundpolicy", "activate", first.pk)
    assert response.status_code == 302
    assert client.post(f"/api/v1/policies/{second.pk}/activate", **_basic()).status_code == 200
    by_admin, by_api = _events("policy.activated")
    assert by_admin == ("user:olivia", str(first.pk), by_api[2])
    assert by_api[:2] == ("user:olivia", str(second.pk))


def test_a_policy_is_never_edited_in_place_from_the_admin(staff, policy):
    response = staff.post(
        f"/admin/rounds/roundpolicy/{policy.pk}/change/", {"local_epochs": 99, "min_banks": 3}
    )
    assert response.status_code == 403
    assert RoundPolicy.objects.get(pk=policy.pk).local_epochs != 99


def test_a_key_epoch_from_the_admin_writes_the_event_the_api_writes(staff, client, ckks):
    import json

    from he.keys import generate_secret_context, public_context_bytes

    response = staff.post(
        "/admin/rounds/keyepoch/add/",
        {
            "public_context_file": SimpleUploadedFile("public.ctx", ckks.public_bytes),
            "ckks_params_json": json.dumps(PARAMS.to_dict()),
        },
    )
    assert response.status_code == 302, response.content[-2000:]
    other = public_context_bytes(generate_secret_context(PARAMS))
    response = client.post(
        "/api/v1/key-epochs/",
        {"public_context_b64": b64(other), "ckks_params": PARAMS.to_dict()},
        content_type="application/json",
        **_basic(),
    )
    assert response.status_code == 201
    by_admin, by_api = _events("key_epoch.registered")
    assert by_admin[0] == by_api[0] == "user:olivia"
    assert set(by_admin[2]) == set(by_api[2]) == {"number", "fingerprint", "ckks_params"}
    assert by_admin[2]["fingerprint"] == ckks.fingerprint
    assert KeyEpoch.objects.count() == 2


def test_a_refusal_in_the_admin_is_audited_like_one_through_the_api(staff, bank_alpha):
    Bank.objects.filter(pk=bank_alpha.bank.pk).update(status=BankStatus.REVOKED)
    response = _admin_action(staff, "members/bank", "reactivate", bank_alpha.bank.pk)
    assert response.status_code == 302
    assert Bank.objects.get(pk=bank_alpha.bank.pk).status == BankStatus.REVOKED
    [(actor, _, data)] = _events("bank.status_refused")
    assert actor == "user:olivia" and "revocation cannot be undone" in data["reason"]
