"""What the agent does with each model it evaluates or its gate decides: store, offer, report.

``EvaluationGate`` calls ``evaluated`` for every global model the node evaluates and
``decided`` for every gate verdict it reaches. Neither ever stops the node: a registry
it cannot write is logged and the round goes on as before (the root ``global_model.*``
files are written by ``bank_node.state`` as always).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bank_node import registry_metrics
from bank_node.config import ConfigError, NodeConfig
from bank_node.passport import passport_for, version_name
from bank_node.portal_client import BankClient, PortalError
from bank_node.registry import ModelRegistry
from protocol import RoundInfo

log = logging.getLogger("bank_node")


class NodeRegistry:
    """The node's ``ModelRegistry``, fed by the agent; ``client`` reports what it serves."""

    def __init__(self, config: NodeConfig, client: BankClient | None) -> None:
        self.config = config
        self.client = client
        self.registry = ModelRegistry(config.state_dir, config.promotion_tolerance)
        registry_metrics.watch(config.state_dir)

    def evaluated(
        self,
        rnd: RoundInfo,
        weights: np.ndarray,
        threshold: float | None,
        metrics: dict[str, Any],
        verdict: dict[str, Any] | None,
    ) -> None:
        """Store published round ``rnd``'s model with its passport, and offer it."""
        try:
            passport = passport_for(rnd, self.config.bank, metrics, threshold)
            if passport.gated and verdict is not None:
                passport = passport.with_verdict(verdict)
            self.registry.store(rnd, weights, passport)
            self._offer(passport.version)
        # The registry never stops the node: the root model files are written regardless.
        except (ConfigError, OSError, ValueError, TypeError) as exc:
            log.error("round %s: model not stored in the registry: %s", rnd.number, exc)

    def decided(self, candidate: int, verdict: dict[str, Any]) -> None:
        """Record this bank's gate verdict on ``candidate`` and offer it if adopted."""
        version = version_name(candidate)
        if not (self.registry.root / version).is_dir():
            return  # not evaluated here yet: stored with this verdict when it is
        try:
            self.registry.update(self.registry.passport(version).with_verdict(verdict))
            self._offer(version)
        except (ConfigError, OSError, ValueError, TypeError) as exc:
            log.error("round %s: gate verdict not recorded in the registry: %s", candidate, exc)

    def _offer(self, version: str) -> None:
        passport = self.registry.offer(version)
        if passport.held is None:
            log.info("model %s (round %s) is the promoted model", version, passport.round)
        elif passport.held == "awaiting_gate":
            log.info("model %s stored; promoted only once this bank's gate adopts it", version)
        else:
            log.warning("model %s stored but not promoted: %s", version, passport.held_detail)
            registry_metrics.held(passport.held)
        self.report()

    def report(self) -> None:
        """Tell the portal which version this node serves, when the bank opted in.

        Sent after every model the node stores, so a report the portal missed (or a
        promotion made with ``bank-node models``) reaches it with the next round.
        """
        if not self.config.report_served_model or self.client is None:
            return
        try:
            passport = self.registry.promoted_passport()
            if passport is not None:
                self.client.report_served_model(passport.round, passport.version)
        except (ConfigError, PortalError) as exc:
            log.warning("served model not reported to the portal: %s", exc)
