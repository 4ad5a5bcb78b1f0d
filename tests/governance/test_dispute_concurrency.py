"""Objections and clearances arriving together: the dispute and its clearance are audited once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection, connections
from portal_helpers import Founder
from roster_helpers import NOW

from audit.models import AuditEvent
from consortium.governance import selectors, services
from governance import Objection, sign_clearance, sign_objection

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite serialises every write on one file lock, so parallel objections prove "
    "nothing there; the PostgreSQL run (make test) executes this test",
)


def _object(bank: Founder) -> None:
    objection = Objection("acme", 5, bank.slug, "aggregate_integrity", "negative count", NOW)
    services.objection_record(
        bank=bank.persona.bank,
        objection_json=objection.to_dict(),
        signature=sign_objection(objection, bank.keys.key),
    )


def _clear(bank: Founder) -> None:
    signature = sign_clearance("acme", 5, bank.keys.key)
    services.dispute_clearance_sign(number=5, bank_slug=bank.slug, signature=signature)


def _together(work: Callable[[Founder], None], banks: list[Founder]) -> None:
    start = threading.Barrier(len(banks))
    errors: list[BaseException] = []

    def run(bank: Founder) -> None:
        try:
            start.wait()
            work(bank)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(b,)) for b in banks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_objections_arriving_together_dispute_the_round_and_audit_it_once(founded):
    _object(founded["alpha"])
    _together(_object, [founded[b] for b in ("beta", "gamma", "delta")])
    assert selectors.round_is_disputed(5)
    assert AuditEvent.objects.filter(action="round.disputed", data__round=5).count() == 1
    _clear(founded["alpha"])
    _together(_clear, [founded[b] for b in ("beta", "gamma")])
    assert not selectors.round_is_disputed(5)
    assert AuditEvent.objects.filter(action="round.dispute_cleared", data__round=5).count() == 1
