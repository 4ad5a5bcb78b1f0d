"""The agent's secure-aggregation v2 steps: post mask keys, mask an upload, reveal, check, decrypt.

``bank_node/secagg.py`` and ``bank_node/secagg_record.py`` hold the protocol logic; this
class wires them to the portal client, the node's keys and its state directory, one step
per round phase. Every refusal is a ``Refused`` that the agent turns into an objection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bank_node import metrics as node_metrics
from bank_node.checks import Refused, file_sha256
from bank_node.config import NodeConfig
from bank_node.encrypt_pool import EncryptPool, PoolFailed, start_pool, worker_secret
from bank_node.keys import Keyring
from bank_node.portal_client import BankClient
from bank_node.secagg import (
    Me,
    adopt_cohort_keys,
    answer_unmask,
    check_cohort_keys,
    mask_keys_post,
    mask_terms,
    masked_update,
)
from bank_node.secagg_masks import MaskJob, masks_for
from bank_node.secagg_record import aggregate_chosen, check_record, recompute_aggregate
from bank_node.secagg_state import SECAGG_DIR, round_file, round_file_if_any, save_round_file
from governance import RosterState
from he.errors import HEError, UpdateInvalid
from he.integrity import AggregateRejected
from he.premask import PrecomputedMasks, precompute_masks
from he.ring import SealKit, kit_from_tenseal
from he.seeded import decrypt_vector2
from protocol import CohortKeys, Manifest, RoundInfo

log = logging.getLogger("bank_node")


class SecAggSteps:
    """One v2 round phase at a time, for the agent."""

    def __init__(
        self,
        config: NodeConfig,
        keys: Keyring,
        client: BankClient,
        roster: Callable[[], RosterState | None],
    ) -> None:
        self.config = config
        self.keys = keys
        self.client = client
        self._roster = roster
        self._kits: dict[str, SealKit] = {}
        self._masks: MaskJob | None = None
        self._pool: EncryptPool | None = None

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def roster(self, number: int) -> RosterState:
        """The verified roster; without one the node cannot verify any key of a v2 round."""
        state = self._roster()
        if state is None:
            raise Refused(
                "secagg_unpinned",
                f"round {number} runs secure aggregation v2, whose keys only a pinned roster "
                "can vouch for; set genesis_file to take part",
            )
        return state

    def me(self, number: int) -> Me:
        if self.keys.agreement_key is None:
            raise Refused(
                "secagg_no_agreement_key",
                f"round {number} runs secure aggregation v2 and this node has no agreement.key "
                "beside its signing key (bank-node signing-keygen writes both)",
            )
        return Me(self.config.bank, self.keys.signing_key, self.keys.agreement_key)

    def kit(self, epoch: str) -> SealKit:
        """SEAL objects of the node's secret context for ``epoch`` (made once per epoch)."""
        if epoch not in self._kits:
            ctx, params = self.keys.for_epoch(epoch)
            self._kits[epoch] = kit_from_tenseal(ctx, params)
        return self._kits[epoch]

    # --- the round's phases ------------------------------------------------------------------

    def share(self, rnd: RoundInfo) -> None:
        """Phase *sharing*: advertise the round's mask key and relay the share boxes, once."""
        if (stored := round_file_if_any(self.state_dir, rnd.number)) and stored.posted:
            return
        post = mask_keys_post(self.roster(rnd.number), rnd, self.me(rnd.number), self.state_dir)
        self.client.mask_keys_put(rnd.number, post)
        rf = round_file(self.state_dir, rnd.number)
        rf.posted = True
        save_round_file(self.state_dir, rf)
        log.info("round %s: mask key advertised", rnd.number)

    def cohort(self, rnd: RoundInfo) -> CohortKeys:
        """Phase *open*: the final cohort keys, checked, before training for this round."""
        keys, roster = self.client.cohort_keys(rnd.number), self.roster(rnd.number)
        check_cohort_keys(roster, rnd, keys, self.config.bank)
        adopt_cohort_keys(roster, rnd, keys, self.config.bank, self.state_dir)
        return keys

    def start_masks(self, rnd: RoundInfo, keys: CohortKeys) -> None:
        """Start computing the round's masks, for the training to overlap.

        A large update gets worker processes (``encrypt_workers``) that compute their
        blocks' masks now and encrypt them later; otherwise a thread computes them. Only
        one round's are kept: those of an earlier round the node sat out are dropped. The
        thread reads the kit's primes only, so the node may decrypt the round's base with
        the same kit meanwhile.
        """
        if self._pool is not None:
            self._pool.close()
        self._pool = self._start_pool(rnd, keys)
        if self._pool is None:
            compute = self._mask_computation(rnd, keys, rnd.vector_length)
            self._masks = MaskJob(rnd.number, rnd.vector_length, compute)

    def _start_pool(self, rnd: RoundInfo, keys: CohortKeys) -> EncryptPool | None:
        roster = self.roster(rnd.number)
        terms, binding = mask_terms(roster, rnd, self.config.bank, keys, self.state_dir)
        ctx, params = self.keys.for_epoch(rnd.key_epoch)
        try:
            return start_pool(
                rnd.number,
                params,
                lambda: worker_secret(ctx),
                terms,
                binding,
                rnd.vector_length,
                self.config.encrypt_workers,
            )
        except PoolFailed as exc:
            log.warning("round %s: masks on a thread instead of workers: %s", rnd.number, exc)
            return None

    def encrypt(self, rnd: RoundInfo, values: np.ndarray, keys: CohortKeys) -> tuple[str, Path]:
        """Mask and encrypt the packed update (``CKKSVEC2``) to a file; its digest and path.

        The masks come from ``start_masks`` (waited for if still computing), or are computed
        inline when that failed; ``bank_node_encrypt_duration_seconds`` times the rest.
        """
        path = self.state_dir / f"update-round-{rnd.number}.ckks2"
        pool, self._pool = self._pool, None
        if pool is not None and (digest := self._encrypt_pooled(pool, rnd, values, path)):
            return digest, path
        roster, kit = self.roster(rnd.number), self.kit(rnd.key_epoch)
        job, self._masks = self._masks, None
        masks = masks_for(
            job, rnd.number, values.size, lambda: self._mask_computation(rnd, keys, values.size)()
        )
        with node_metrics.ENCRYPT_SECONDS.time():
            digest = masked_update(
                kit, values, roster, rnd, self.config.bank, keys, path, self.state_dir, masks
            )
        return digest, path

    def _encrypt_pooled(
        self, pool: EncryptPool, rnd: RoundInfo, values: np.ndarray, path: Path
    ) -> str | None:
        """The workers' encryption of the update; None (logged) when they cannot give it."""
        try:
            if (pool.number, pool.length) != (rnd.number, values.size):
                raise PoolFailed(f"they were started for round {pool.number}, {pool.length} values")
            pool.wait_ready()
            with node_metrics.ENCRYPT_SECONDS.time(), open(path, "wb") as stream:
                return pool.encrypt(values, rnd.key_epoch, stream)
        except PoolFailed as exc:
            log.warning("round %s: encrypting in the node's process: %s", rnd.number, exc)
            return None
        finally:
            pool.close()

    def _mask_computation(
        self, rnd: RoundInfo, keys: CohortKeys, length: int
    ) -> Callable[[], PrecomputedMasks]:
        """The masks of a ``length``-value update in ``rnd``, to compute now or on a thread.

        The seeds are derived here, on the caller's thread (they read the roster and the
        round file); the callable only expands them.
        """
        roster, kit = self.roster(rnd.number), self.kit(rnd.key_epoch)
        terms, binding = mask_terms(roster, rnd, self.config.bank, keys, self.state_dir)
        return lambda: precompute_masks(kit, terms, binding, length)

    def unmask(self, rnd: RoundInfo) -> None:
        """Phase *unmasking*: answer the request with this bank's signed reveal, once."""
        if (stored := round_file_if_any(self.state_dir, rnd.number)) and stored.reveal_sent:
            return
        request = self.client.unmask_request(rnd.number)
        roster = self.roster(rnd.number)
        reveal = answer_unmask(roster, rnd, self.me(rnd.number), request, self.state_dir)
        self.client.reveal_post(rnd.number, reveal)
        rf = round_file(self.state_dir, rnd.number)
        rf.reveal_sent = True
        save_round_file(self.state_dir, rf)
        log.info("round %s: shares revealed (%d dropped)", rnd.number, len(reveal.dropped))

    # --- a published aggregate ---------------------------------------------------------------

    def check_published(self, info: RoundInfo, manifest: Manifest, aggregate: Path) -> None:
        """Check the record; when this node is chosen, recompute the aggregate to ``aggregate``."""
        roster = self.roster(info.number)
        stored = round_file_if_any(self.state_dir, info.number)
        seen = CohortKeys.from_dict(stored.cohort_keys) if stored and stored.cohort_keys else None
        check_record(roster, info, manifest, seen)
        if aggregate.exists() or not aggregate_chosen(info.policy, len(manifest.inputs)):
            return
        try:
            self._recompute(roster, info, manifest, aggregate)
        except HEError as exc:  # e.g. this node holds no key for the round's epoch
            raise Refused("aggregate_integrity", f"round {info.number}: {exc}") from None

    def _recompute(
        self, roster: RosterState, info: RoundInfo, manifest: Manifest, aggregate: Path
    ) -> None:
        folder = self.state_dir / SECAGG_DIR / f"round-{info.number}-submissions"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = aggregate.with_suffix(".recomputed")
        try:
            paths = {
                i.bank: self._submission(info.number, i.bank, i.digest, folder)
                for i in manifest.inputs
            }
            recompute_aggregate(self.kit(info.key_epoch), roster, info, manifest, paths, tmp)
            tmp.replace(aggregate)  # byte for byte the published aggregate: no download needed
            log.info("round %s: aggregate recomputed from the signed uploads", info.number)
        finally:
            tmp.unlink(missing_ok=True)
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()

    def _submission(self, number: int, bank: str, digest: str, folder: Path) -> Path:
        path = folder / f"{bank}.ckks2"
        self.client.download_submission(number, bank, path)
        if file_sha256(path) != digest:
            raise Refused(
                "aggregate_substituted",
                f"round {number}: the upload served for {bank!r} is not the one it signed",
            )
        return path

    def decrypt(self, path: Path, epoch: str) -> np.ndarray:
        """Decrypt a v2 aggregate; a malformed one is refused like a forged one."""
        with open(path, "rb") as stream:
            try:
                return decrypt_vector2(self.kit(epoch), stream)
            except (UpdateInvalid, HEError) as exc:
                raise AggregateRejected(f"the aggregate could not be decrypted: {exc}") from exc
