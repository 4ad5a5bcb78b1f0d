"""A v2 upload's masks, computed on a background thread while the node trains.

The masks depend on the final cohort keys and the round, not on the update
(``he/premask.py``), so the node starts them as soon as it has checked those keys, and
its encryption only adds them. Whatever goes wrong on the thread is kept, not raised
there: the encryption then logs it and computes the masks inline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bank_node import metrics as node_metrics
from he.premask import PrecomputedMasks

log = logging.getLogger("bank_node")


class MaskJob:
    """One round's masks for ``length`` values, computing on a daemon thread from creation."""

    def __init__(self, number: int, length: int, compute: Callable[[], PrecomputedMasks]) -> None:
        self.number = number
        self.length = length
        self._compute = compute
        self._masks: PrecomputedMasks | None = None
        self.error: BaseException | None = None
        # A daemon: a node stopping mid-round does not wait for masks it will not use.
        self._thread = threading.Thread(target=self._run, name=f"masks-round-{number}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self._masks = self._compute()
        except Exception as exc:  # kept for the encryption to log, then compute inline
            self.error = exc
            return
        node_metrics.MASK_SECONDS.labels(where="background").observe(time.monotonic() - started)

    def wait(self) -> PrecomputedMasks | None:
        """The masks once the thread is done (None if it failed); the wait is timed."""
        started = time.monotonic()
        self._thread.join()
        node_metrics.MASK_WAIT_SECONDS.observe(time.monotonic() - started)
        return self._masks


def masks_for(
    job: MaskJob | None, number: int, length: int, compute: Callable[[], PrecomputedMasks]
) -> PrecomputedMasks:
    """The background masks of round ``number`` when they fit ``length`` values, else inline.

    A missing job (e.g. the node restarted after training), a failed one or one for another
    length is logged, and the masks are computed here, on the encryption's path.
    """
    masks = job.wait() if job is not None and job.number == number else None
    if masks is not None and masks.length == length:
        return masks
    log.warning("round %s: computing the masks inline: %s", number, _why(job, number, masks))
    started = time.monotonic()
    masks = compute()
    node_metrics.MASK_SECONDS.labels(where="inline").observe(time.monotonic() - started)
    return masks


def _why(job: MaskJob | None, number: int, masks: PrecomputedMasks | None) -> str:
    if job is None or job.number != number:
        return "none were started in the background for this round"
    if masks is None:
        return f"the background computation failed: {job.error!r}"
    return f"the background masks cover {masks.length} values, the update has another length"
