"""The node's model registry: every evaluated global model as a version, and the promoted one.

Layout, inside the node's ``state_dir`` (docs/model-registry.md):

- ``models/<version>/``: ``global_model.npy``, ``global_model.json`` and the normalisation
  file, in exactly the format ``bank_node.scoring_model`` loads, plus ``passport.json``;
- ``models/promoted``: the name of the version ``bank-node score`` and ``serve`` use,
  replaced atomically;
- ``models/history.json``: the versions promoted so far, in order (``models rollback``);
- ``models/pin.json``: present after a rollback until the next ``models promote``
  (``bank_node.registry_pin``).

Promotion policy: a version is promoted automatically only once it is adopted (at once
under an ungated policy; under a gated one when this bank's own gate verdict adopts it),
is not older than the promoted one, and its AUPRC on this bank's held-out data is at most
``promotion_tolerance`` below the promoted version's, and no rollback pinned the promoted
version. Otherwise it is kept and held, with the reason in its passport.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.config import ConfigError
from bank_node.model_files import (
    MODEL_META,
    MODEL_WEIGHTS,
    MODELS_DIR,
    PROMOTED,
    promoted_directory,
)
from bank_node.passport import Passport, read_passport, write_passport
from bank_node.registry_pin import PINNED, Pin, clear_pin, read_pin, write_pin
from protocol import RoundInfo

HISTORY_FILE = "history.json"

# Why a version was not promoted automatically (the label of bank_node_model_versions_held).
HELD_REASONS = (
    "awaiting_gate",  # gated: this bank's verdict is not in yet
    "rejected_by_gate",  # gated: this bank's own gate rejected it
    "older_than_promoted",  # a newer version is promoted already
    "local_drop",  # its local AUPRC fell more than promotion_tolerance
    "no_local_auprc",  # no local AUPRC to compare with the promoted version's
    PINNED,  # a rollback pinned the promoted version until a person promotes another
)

_ROUND = re.compile(r"^round-(\d+)$")


class UnknownVersion(ConfigError):
    """A version name the registry does not hold."""


class PromotionRefused(ConfigError):
    """A manual promotion the promotion policy refuses (``--force`` overrides it)."""


class ModelRegistry:
    """The versions under ``state_dir/models``; ``tolerance`` in AUPRC points (0.02 = 2)."""

    def __init__(self, state_dir: Path, tolerance: float) -> None:
        self.state_dir = state_dir
        self.root = state_dir / MODELS_DIR
        self.tolerance = tolerance

    # --- reading --------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every stored version, oldest round first."""
        if not self.root.is_dir():
            return []
        found = [d.name for d in self.root.iterdir() if d.is_dir() and _ROUND.match(d.name)]
        return sorted(found, key=_round_of)

    def versions(self) -> list[Passport]:
        return [self.passport(name) for name in self.names()]

    def directory(self, version: str) -> Path:
        """The directory of ``version``, or UnknownVersion naming it and the valid ones."""
        names = self.names()
        if version not in names:
            valid = ", ".join(names) if names else "none yet (the node has evaluated no model)"
            raise UnknownVersion(
                f"no model version {version!r} in {self.root}; the versions are: {valid}"
            )
        return self.root / version

    def passport(self, version: str) -> Passport:
        return read_passport(self.directory(version))

    def promoted(self) -> str | None:
        """The promoted version's name (None: none yet); ConfigError if the pointer is bad."""
        return promoted_directory(self.state_dir)[1]

    def promoted_passport(self) -> Passport | None:
        name = self.promoted()
        return None if name is None else self.passport(name)

    def pin(self) -> Pin | None:
        """The rollback pin (None: automatic promotion is on); ConfigError if corrupt."""
        return read_pin(self.root)

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY_FILE
        if not path.exists():
            return []
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a promotion history: {exc}") from exc
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{path}: not a promotion history (a list of objects)")
        return entries

    # --- writing --------------------------------------------------------------------

    def store(self, rnd: RoundInfo, weights: np.ndarray, passport: Passport) -> Path:
        """Write ``passport.version`` whole: built aside, then renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / passport.version
        building = self.root / f".{passport.version}.building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        np.save(building / MODEL_WEIGHTS, weights)
        about = {
            "round": rnd.number,
            "policy": rnd.policy.to_dict(),
            "stats_round": rnd.stats_round,
            "key_epoch": rnd.key_epoch,  # keys a sketch policy's cross-bank columns at scoring
            "threshold": passport.threshold,
        }
        (building / MODEL_META).write_text(json.dumps(about, indent=2))
        if rnd.stats_round is not None:
            name = f"normalization-round-{rnd.stats_round}.json"
            shutil.copyfile(self.state_dir / name, building / name)
        write_passport(building, passport)
        if final.exists():  # evaluated again (a restart mid-round): the newer copy wins
            shutil.rmtree(final)
        building.rename(final)
        return final

    def update(self, passport: Passport) -> None:
        write_passport(self.directory(passport.version), passport)

    def offer(self, version: str) -> Passport:
        """Promote ``version`` if the promotion policy allows; else hold it, saying why."""
        passport = self.passport(version)
        reason, detail = self.hold_reason(passport)
        if reason is None and self.promoted() != version:
            self._point_to(version, "automatic")
        passport = passport.holding(reason, detail)
        self.update(passport)
        return passport

    def promote(self, version: str, *, force: bool = False, by: str | None = None) -> Passport:
        """Promote ``version`` by hand; PromotionRefused (unless ``force``) names the rule.

        A person's promotion is the explicit decision a rollback pin waits for: it lifts the
        pin, and automatic promotion applies again from the next adopted version.
        """
        passport = self.passport(version)
        reason, detail = self.refusal(passport)
        if reason is not None and not force:
            raise PromotionRefused(f"{version} not promoted: {detail}; --force promotes it anyway")
        if self.promoted() != version:
            self._point_to(version, "manual" if reason is None else "forced", by)
        clear_pin(self.root)
        passport = passport.holding(None)
        self.update(passport)
        return passport

    def rollback(self, *, by: str = "unknown") -> str:
        """Promote again the version promoted before the current one, pinned; its name."""
        current = self.promoted()
        stack = _promotion_stack(self.history())
        if current is None or not stack or stack[-1] != current:
            raise ConfigError(f"nothing to roll back: no promoted version in {self.root}")
        for previous in reversed(stack[:-1]):
            if previous != current and (self.root / previous).is_dir():
                stamp = self._point_to(previous, "rollback", by)
                write_pin(self.root, Pin(previous, stamp["at"], by))
                return previous
        raise ConfigError(
            f"nothing to roll back to: {current} is the first promoted version still stored"
        )

    # --- the promotion policy -------------------------------------------------------

    def hold_reason(self, passport: Passport) -> tuple[str | None, str]:
        """Why ``passport``'s version must not be promoted now (None: it may), in words."""
        gate = _gate_reason(passport)
        if gate[0] is not None:
            return gate
        pin = self.pin()
        if pin is not None and pin.version != passport.version:
            return PINNED, (
                f"{pin.describe()}; `bank-node models promote {passport.version}` serves it"
            )
        return self._against_promoted(passport)

    def _against_promoted(self, passport: Passport) -> tuple[str | None, str]:
        """An adopted version against the promoted one: not older, no larger AUPRC drop."""
        current = self.promoted_passport()
        if current is None or current.version == passport.version:
            return None, ""
        if passport.round < current.round:
            return "older_than_promoted", f"it is older than the promoted {current.version}"
        return self._drop(passport, current)

    def refusal(self, passport: Passport) -> tuple[str | None, str]:
        """Why ``models promote`` refuses ``passport`` without --force (None: it does not).

        As the automatic policy, except that an older version is a choice a person may
        make (its AUPRC is still held to the tolerance) and a rollback pin does not apply
        (a person promoting is what the pin waits for).
        """
        reason, detail = _gate_reason(passport)
        if reason is None:
            reason, detail = self._against_promoted(passport)
        if reason != "older_than_promoted":
            return reason, detail
        current = self.promoted_passport()
        assert current is not None  # older than the promoted version: there is one
        return self._drop(passport, current)

    def _drop(self, passport: Passport, current: Passport) -> tuple[str | None, str]:
        new, old = passport.local_auprc, current.local_auprc
        if old is None:  # nothing to fall from
            return None, ""
        if new is None:
            return "no_local_auprc", (
                f"it has no local AUPRC to compare with the promoted {current.version}'s {old:.4f}"
            )
        if old - new > self.tolerance:
            return "local_drop", (
                f"its local AUPRC {new:.4f} is {old - new:.4f} below the promoted "
                f"{current.version}'s {old:.4f}, more than promotion_tolerance {self.tolerance:g}"
            )
        return None, ""

    # --- the pointer and its history ------------------------------------------------

    def _point_to(self, version: str, how: str, by: str | None = None) -> dict[str, Any]:
        """Point at ``version`` and record it in the history; the history's new entry."""
        self._write_pointer(version)
        stamp = {"version": version, "at": _now(), "how": how}
        if by is not None:  # a person's act (promote, rollback): who, for the record
            stamp["by"] = by
        self._write_history([*self.history(), stamp])
        return stamp

    def _write_pointer(self, version: str) -> None:
        _atomic_write(self.root / PROMOTED, version + "\n")

    def _write_history(self, entries: list[dict[str, Any]]) -> None:
        _atomic_write(self.root / HISTORY_FILE, json.dumps(entries, indent=2))


def _gate_reason(passport: Passport) -> tuple[str | None, str]:
    """Why the gate keeps ``passport``'s version from being served (None: it adopted it)."""
    if passport.adopted:
        return None, ""
    if passport.consortium_evaluation is None:
        return "awaiting_gate", "this bank's gate has not decided on it yet"
    evaluation = passport.consortium_evaluation.get("round")
    return "rejected_by_gate", f"this bank's gate rejected it (evaluation round {evaluation})"


def _promotion_stack(entries: list[dict[str, Any]]) -> list[str]:
    """The promoted versions a rollback walks back through, replayed from the history.

    Each promotion pushes its version; a rollback to V pops back to V's last push. The
    history itself keeps every entry, rollbacks included (who served what, and when).
    """
    stack: list[str] = []
    for entry in entries:
        version = str(entry.get("version"))
        if entry.get("how") == "rollback" and version in stack:
            stack = stack[: len(stack) - stack[::-1].index(version)]
        else:
            stack.append(version)
    return stack


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a reader sees the old content or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _round_of(name: str) -> int:
    match = _ROUND.match(name)
    return int(match.group(1)) if match else -1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
