"""Operator self-service: accounts of representatives and auditors, made in the portal."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from audit.models import AuditEvent
from consortium.portal.models import BankRepresentative
from tests.portal.test_portal_pages import text

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-long-enough-passphrase-7"


@pytest.fixture
def op(operator: Any, client_for: Any) -> Client:
    client: Client = client_for(operator)
    return client


def _link(response: Any) -> str:
    found = re.search(r'data-testid="setup-link">([^<]+)<', response.content.decode())
    assert found is not None, text(response)
    return found.group(1).replace("http://testserver", "")


def _set_password(link: str) -> tuple[Client, Any]:
    person = Client()
    form = person.get(link, follow=True)  # Django swaps the token for a session first
    assert form.status_code == 200 and "Choose your password" in text(form)
    done = person.post(
        form.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    return person, done


def test_an_operator_creates_a_representative_who_sets_a_password_and_signs_in(op, bank_alpha):
    created = op.post(
        "/accounts/", {"username": "rita", "email": "", "role": "representative", "bank": "alpha"}
    )
    assert created.status_code == 200 and "rita has an account" in text(created)
    rita = User.objects.get(username="rita")
    assert not rita.has_usable_password()
    assert BankRepresentative.objects.get(user=rita).bank.slug == "alpha"
    assert AuditEvent.objects.get(action="account.created").data == {
        "user": "rita",
        "role": "representative",
        "bank": "alpha",
    }
    _, done = _set_password(_link(created))
    assert done.status_code == 302 and done["Location"] == "/login/"
    person = Client()
    signed_in = person.post("/login/", {"username": "rita", "password": NEW_PASSWORD})
    assert signed_in.status_code == 302
    assert person.get("/banks/alpha/").status_code == 200
    assert AuditEvent.objects.filter(action="account.setup_completed", actor="user:rita").exists()


def test_an_operator_creates_an_auditor_who_reads_the_trail(op, bank_alpha):
    created = op.post("/accounts/", {"username": "axel", "role": "auditor"})
    _set_password(_link(created))
    person = Client()
    person.post("/login/", {"username": "axel", "password": NEW_PASSWORD})
    assert person.get("/audit/").status_code == 200
    assert person.get("/accounts/").status_code == 403  # auditors read, they manage nothing


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"username": "rita", "role": "representative"}, "bank", "choose it"),
        ({"username": "olivia", "role": "auditor"}, "username", "already exists"),
        ({"username": "x y", "role": "auditor"}, "username", "Enter a valid"),
        ({"username": "zed"}, "role", "This field is required"),
    ],
)
def test_a_bad_account_is_a_400_naming_the_field(op, bank_alpha, data, field, message):
    response = op.post("/accounts/", data)
    assert response.status_code == 400
    html = response.content.decode()
    # The first error list after the field's input is the field's own.
    after = html.split(f'id="id_{field}', 1)[1]
    assert message in after.split('class="errorlist"', 1)[1].split("</ul>", 1)[0]
    assert not AuditEvent.objects.filter(action="account.created").exists()


def test_a_setup_link_works_once_and_a_new_one_replaces_it(op, auditor):
    first = _link(op.post(f"/accounts/{auditor.pk}/setup", {"confirmed": "yes"}))
    second = _link(op.post(f"/accounts/{auditor.pk}/setup", {"confirmed": "yes"}))
    replaced = Client().get(first, follow=True)
    assert replaced.status_code == 404 and "This setup link no longer works" in text(replaced)
    _set_password(second)
    used = Client().get(second, follow=True)
    assert used.status_code == 404 and "This setup link no longer works" in text(used)
    assert AuditEvent.objects.filter(action="account.setup_issued").count() == 2


def test_resending_setup_asks_first_when_the_account_has_a_password(op, auditor):
    asked = op.post(f"/accounts/{auditor.pk}/setup")
    assert "Send audrey a new setup link?" in text(asked)
    assert "current password stops working" in text(asked)
    auditor.refresh_from_db()
    assert auditor.has_usable_password()


def test_deactivating_asks_first_then_signs_the_person_out(op, auditor):
    person = Client()
    person.force_login(auditor)
    asked = op.post(f"/accounts/{auditor.pk}/deactivate")
    assert asked.status_code == 200 and "Deactivate audrey?" in text(asked)
    assert person.get("/audit/").status_code == 200
    op.post(f"/accounts/{auditor.pk}/deactivate", {"confirmed": "yes"})
    assert person.get("/audit/").status_code == 302  # to the sign-in page
    assert "deactivated" in text(op.get("/accounts/"))
    assert AuditEvent.objects.filter(action="account.deactivated").exists()
    op.post(f"/accounts/{auditor.pk}/reactivate")
    assert User.objects.get(pk=auditor.pk).is_active


def test_operator_accounts_are_not_managed_here(op, operator, django_user_model):
    other = django_user_model.objects.create_superuser("root", password="root-password-1")
    response = op.post(f"/accounts/{other.pk}/deactivate", {"confirmed": "yes"}, follow=True)
    assert "is an operator" in text(response)
    assert User.objects.get(pk=other.pk).is_active


@pytest.mark.parametrize("who", ["auditor", "bank_rep", "roleless"])
def test_only_operators_reach_the_accounts_page(who, request, client_for):
    client = client_for(request.getfixturevalue(who))
    assert client.get("/accounts/").status_code == 403
    assert client.post("/accounts/", {"username": "z", "role": "auditor"}).status_code == 403
