"""Banks signing at the same moment: the version takes effect exactly once, never stays stuck."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from portal_helpers import Founder, onboard

from audit.models import AuditEvent
from consortium.governance import selectors, services
from consortium.governance.models import RosterVersion, VersionStatus
from governance import sign_version


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite serialises every write on one file lock, so parallel signatures prove "
    "nothing there; the PostgreSQL run (make test) executes this test",
)
@pytest.mark.django_db(transaction=True)
def test_the_last_two_approvals_arriving_together_put_the_version_in_force_once(founded):
    newcomer = onboard("epsilon")
    change = {"kind": "admit_bank", "member": newcomer.keys.member().to_dict()}
    row = services.roster_change_propose(change=change, actor="user:olivia")
    version = selectors.signed_version(row)

    def sign(bank: Founder) -> None:
        keys = bank.keys
        signature = sign_version(version, keys.bank_id, keys.key)
        services.roster_version_sign(number=1, bank_slug=keys.bank_id, signature=signature)

    sign(newcomer)
    sign(founded["alpha"])
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def last(bank: Founder) -> None:
        try:
            start.wait()
            sign(bank)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=last, args=(founded[b],)) for b in ("beta", "gamma")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert RosterVersion.objects.get(number=1).status == VersionStatus.IN_FORCE
    assert AuditEvent.objects.filter(action="roster.in_force").count() == 2  # genesis + this
    state = selectors.roster_state()
    assert state is not None and state.member("epsilon") is not None
