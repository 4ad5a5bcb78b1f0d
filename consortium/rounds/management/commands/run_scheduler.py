"""Advance rounds on a timer: close, aggregate, publish, open the next."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from consortium.rounds.services import scheduler_tick

log = logging.getLogger("consortium.scheduler")


class Command(BaseCommand):
    help = "Run the round scheduler (safe to run in several replicas)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")
        parser.add_argument("--interval", type=float, default=settings.SCHEDULER_INTERVAL_SECONDS)

    def handle(self, *args: Any, once: bool, interval: float, **options: Any) -> None:
        stopping = False

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
            except DatabaseError as exc:
                # The database went away: keep the process, retry on the next tick.
                log.warning("scheduler tick skipped, database unavailable: %s", exc)
            if once:
                return
            time.sleep(interval)
