"""The opt-in report of which model version a bank's node serves, and the bank page showing it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent
from bank_node.portal_client import BankClient, PortalError
from consortium.rounds.models import Round, RoundState, ServedModel
from tests.portal_transport import DjangoTransport

pytestmark = pytest.mark.django_db


def _put(client: Client, persona: Any, number: int, body: dict[str, Any]) -> Any:
    url = f"/api/v1/rounds/{number}/served-model"
    return client.put(url, body, content_type="application/json", **persona.auth())


def _publish(rnd: Round) -> None:
    Round.objects.filter(pk=rnd.pk).update(state=RoundState.PUBLISHED)


def test_a_bank_reports_the_version_it_serves_and_a_later_report_replaces_it(
    client, open_round, bank_alpha
):
    _publish(open_round)
    first = _put(client, bank_alpha, open_round.number, {"version": "round-1"})
    assert first.status_code == 200
    assert first.json()["round"] == open_round.number and first.json()["version"] == "round-1"
    assert _put(client, bank_alpha, open_round.number, {"version": "round-1b"}).status_code == 200

    served = ServedModel.objects.get(bank=bank_alpha.bank)
    assert served.version == "round-1b" and served.round_id == open_round.pk
    events = AuditEvent.objects.filter(action="model.served")
    assert events.count() == 2
    assert {e.actor for e in events} == {"bank:alpha"}


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "version"), ({"version": ""}, "version"), ({"version": "../etc"}, "version"),
     ({"version": "x" * 65}, "version"), ({"version": 7}, "version")],
)  # fmt: skip
def test_a_bad_version_is_a_400_naming_the_field(client, open_round, bank_alpha, body, field):
    _publish(open_round)
    response = _put(client, bank_alpha, open_round.number, body)
    assert response.status_code == 400
    assert field in str(response.json()["extra"])
    assert not ServedModel.objects.exists()


def test_a_round_that_is_not_published_or_does_not_exist_is_refused(client, open_round, bank_alpha):
    early = _put(client, bank_alpha, open_round.number, {"version": "round-1"})
    assert early.status_code == 409 and "only a published round" in early.json()["message"]
    missing = _put(client, bank_alpha, 999, {"version": "round-999"})
    assert missing.status_code == 404 and "round 999 does not exist" in missing.json()["message"]
    assert not ServedModel.objects.exists()


def test_only_a_bank_reports_what_it_serves(client, open_round, operator):
    _publish(open_round)
    client.force_login(operator)
    url = f"/api/v1/rounds/{open_round.number}/served-model"
    response = client.put(url, {"version": "round-1"}, content_type="application/json")
    assert response.status_code in (401, 403)


def test_the_banks_page_shows_the_version_it_serves_or_that_it_reported_none(
    client, open_round, bank_alpha, operator
):
    client.force_login(operator)
    assert "not reported" in client.get("/banks/alpha/").content.decode()
    _publish(open_round)
    assert _put(Client(), bank_alpha, open_round.number, {"version": "round-1"}).status_code == 200
    page = client.get("/banks/alpha/").content.decode()
    assert "round-1</span> (round 1)" in page


def test_the_nodes_client_reports_through_the_real_endpoint(client, open_round, bank_alpha):
    portal = BankClient("http://testserver", bank_alpha.credential, max_retries=0)
    portal.session.mount("http://testserver", DjangoTransport(client))
    with pytest.raises(PortalError, match="only a published round"):
        portal.report_served_model(open_round.number, "round-1")
    _publish(open_round)
    answer = portal.report_served_model(open_round.number, "round-1")
    assert answer["version"] == "round-1" and answer["round"] == open_round.number
    assert ServedModel.objects.get(bank=bank_alpha.bank).version == "round-1"
