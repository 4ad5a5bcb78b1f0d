"""The poll loop's last line of defence: nothing the portal sends stops ``bank-node run``.

Every part of a poll (roster refresh, the round in flight, each published round) runs
inside ``StepGuard``. Precise handling lives where the fault is found (``Refused`` with a
reason, in ``checks``, ``aggregate_guard``, ``secagg_*``); the guard catches what escapes:

- a ``Refused`` nobody caught, and an answer of the portal that is not its declared
  message (``PortalMalformed``): refused, counted, objected to;
- any other ``Exception``: its traceback logged at ERROR with the round, counted in
  ``bank_node_unexpected_errors{step}``; after ``MAX_ATTEMPTS`` at the same round the node
  gives up on that round (recorded in its state) instead of failing on it at every poll.

``PortalError`` (unreachable, or a 4xx) goes on to the run loop, which counts it and polls
again. ``KeyboardInterrupt`` and ``SystemExit`` are not ``Exception``: they still stop it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from bank_node import metrics as node_metrics
from bank_node.checks import Refused
from bank_node.portal_client import PortalError, PortalMalformed

log = logging.getLogger("bank_node")

T = TypeVar("T")
# Unexpected failures of one step at one round before the node gives that round up: a
# transient fault (a full disk, a killed download) gets retried at the next polls.
MAX_ATTEMPTS = 3

OnRefused = Callable[[int, Refused], None]
GiveUp = Callable[[str, int, str], None]


class StepGuard:
    """Runs one part of a poll; what escapes it is logged, counted and, if due, objected to.

    ``on_refused(round, exc)`` is the agent's refusal (log, metric, signed objection);
    ``give_up(step, round, why)`` records a round the node stops retrying.
    """

    def __init__(self, on_refused: OnRefused, give_up: GiveUp) -> None:
        self.on_refused = on_refused
        self.give_up = give_up
        self.failures: Counter[tuple[str, int]] = Counter()

    @contextmanager
    def __call__(
        self, step: str, number: int, on_refused: OnRefused | None = None
    ) -> Iterator[None]:
        refuse = on_refused or self.on_refused
        try:
            yield
        except PortalMalformed as exc:
            refuse(number, Refused("portal_malformed", exc.message))
        except PortalError:
            raise  # unreachable or a 4xx: the run loop counts it and polls again
        except Refused as exc:
            refuse(number, exc)
        except Exception as exc:  # the loop must outlive any one bug
            self.unexpected(step, number, exc)

    def call(self, step: str, number: int, action: Callable[[], T]) -> T | None:
        """``action()``, or None when it failed (already logged and counted here)."""
        with self(step, number):
            return action()
        return None

    def unexpected(self, step: str, number: int, exc: Exception) -> None:
        log.error(
            "round %s: unexpected %s in step %r; the last good model stays, the node carries on",
            number,
            type(exc).__name__,
            step,
            exc_info=exc,
        )
        node_metrics.unexpected_error(step)
        self.failures[(step, number)] += 1
        if number and self.failures[(step, number)] >= MAX_ATTEMPTS:
            why = f"gave up after {MAX_ATTEMPTS} unexpected errors: {type(exc).__name__}: {exc}"
            self.give_up(step, number, why[:500])
