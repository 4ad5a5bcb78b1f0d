"""Advance rounds on a timer: close, aggregate, publish, open the next.

Every CONSORTIUM_AUDIT_VERIFY_INTERVAL seconds it also walks the whole audit chain (an
error is logged if it is broken); every tick it forgets the API's replayable answers older
than a day (``Idempotency-Key``). With a metrics port (``--metrics-port`` or
CONSORTIUM_SCHEDULER_METRICS_PORT) it serves /metrics, /healthz and /readyz there; see
consortium/metrics/.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from consortium import metrics
from consortium.api.services import idempotent_prune
from consortium.rounds.services import scheduler_tick

log = logging.getLogger("consortium.scheduler")


class Command(BaseCommand):
    help = "Run the round scheduler (safe to run in several replicas)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")
        parser.add_argument("--interval", type=float, default=settings.SCHEDULER_INTERVAL_SECONDS)
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.SCHEDULER_METRICS_PORT,
            help="serve /metrics, /healthz and /readyz on this port (0: off)",
        )

    def handle(
        self, *args: Any, once: bool, interval: float, metrics_port: int, **options: Any
    ) -> None:
        stopping = False
        if metrics_port:
            metrics.scheduler_serve(metrics_port, settings.SCHEDULER_METRICS_ADDR)

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            close_old_connections()
            try:
                for line in scheduler_tick():
                    log.info(line)
                metrics.audit_verify_if_due(settings.AUDIT_VERIFY_INTERVAL_SECONDS)
                idempotent_prune()  # replayable answers are kept a day, then forgotten
                metrics.SCHEDULER_LAST_TICK.set_to_current_time()
            except DatabaseError as exc:
                metrics.DB_ERRORS.labels("scheduler").inc()
                # The database went away: keep the process, retry on the next tick.
                log.warning("scheduler tick skipped, database unavailable: %s", exc)
            if once:
                return
            time.sleep(interval)
