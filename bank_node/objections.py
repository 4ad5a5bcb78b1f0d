"""Saying no: a refusal is logged, counted, and sent to the portal as a signed objection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node import metrics as node_metrics
from bank_node.portal_client import BankClient, PortalError
from governance import Objection, RosterError, sign_objection

log = logging.getLogger("bank_node")

# Objections are plain text for people; keep them short enough for the roster's limit.
MAX_MESSAGE = 1900


class Objector:
    """Refuses in this bank's name.

    ``consortium_id`` returns the pinned roster's id, or None when no roster is pinned:
    then there is no roster key the portal could verify an objection under, so the
    refusal is only logged and counted.
    """

    def __init__(
        self,
        client: BankClient,
        bank: str,
        signing_key: Ed25519PrivateKey,
        consortium_id: Callable[[], str | None],
    ) -> None:
        self.client = client
        self.bank = bank
        self.signing_key = signing_key
        self.consortium_id = consortium_id
        self.sent: set[tuple[int, str, str]] = set()

    def refuse(self, round_number: int, reason: str, message: str) -> Objection | None:
        """Log, count and (with a pinned roster) send one signed objection per refusal.

        ``round_number`` 0 means "not about a round" (a roster version was refused).
        Returns the objection sent, or None.
        """
        log.error("REFUSED (%s): %s", reason, message)
        node_metrics.refused(reason)
        consortium = self.consortium_id()
        key = (round_number, reason, message)
        if consortium is None or key in self.sent:
            return None
        self.sent.add(key)  # the same refusal on every poll would flood the trail
        try:
            objection = Objection(
                consortium_id=consortium,
                round_number=round_number,
                bank_id=self.bank,
                reason_code=reason,
                message=message[:MAX_MESSAGE],
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        except RosterError as exc:  # e.g. a bank slug that is not a roster id
            log.error("cannot build an objection: %s", exc)
            return None
        signature = sign_objection(objection, self.signing_key)
        try:
            self.client.send_objection(objection.to_dict(), signature)
        except PortalError as exc:
            # The refusal stands either way; the portal not recording it is itself telling.
            log.warning("objection not recorded by the portal: %s", exc)
        return objection
