"""`bank-node serve`'s service: routes, authentication, the served model and scoring, without HTTP.

`ScoringService.handle` turns one request into one `Response`; ``bank_node.serve_http``
puts it behind the standard library's threading HTTP server. Scoring a body takes the
service's lock for the part that reads and writes account state (features of a
transaction depend on every earlier one, so they are computed one batch at a time, in
timestamp order), then scores with the model loaded when the request began.
"""

from __future__ import annotations

import hmac
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bank_node import serve_metrics as metrics
from bank_node.config import ConfigError
from bank_node.explain import alert_reason_lists
from bank_node.feature_store import SqliteStore
from bank_node.online_features import OnlineFeatures, order_problem
from bank_node.scoring_model import MODEL_META, MODEL_WEIGHTS, ScoringModel, load_scoring_model
from bank_node.serve_input import InputError, ScoreRequest, parse_body
from bank_node.serve_sets import SERVED_SETS, ServedSet, check_consistent
from bank_node.sketch_scoring import SketchSource, check_sketch_served, served_cross_bank

log = logging.getLogger("bank_node.serve")

DAY = 86_400
# Old events are pruned up to a day behind the newest transaction, so a transaction up to
# a day late (behind other accounts' newest, never behind its own accounts') still scores.
PRUNE_LAG = DAY
JSON = "application/json"
# The registry's pointer to the promoted version, inside a state directory
# (bank_node.registry): its change triggers a reload, as a change of the model files does.
PROMOTED_POINTER = Path("models") / "promoted"


@dataclass(frozen=True)
class Response:
    """One answer: status, body and content type (JSON unless said otherwise)."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, payload: Any, **kwargs: Any) -> Response:
    return Response(status, json.dumps(payload).encode(), **kwargs)


def explain_alerts(
    model: ScoringModel, normalised: np.ndarray, raw: np.ndarray, scores: np.ndarray
) -> list[list[dict[str, Any]]]:
    """The top reasons of each alerting transaction (none for the others), in plain words."""
    rows = alert_reason_lists(
        model.net, normalised, raw, scores, model.threshold, feature_names=model.feature_names
    )
    return [
        [
            {"feature": r.feature, "contribution": round(r.contribution, 6), "text": r.text}
            for r in row
        ]
        for row in rows
    ]


def served_scores(model: ScoringModel, normalised: np.ndarray) -> np.ndarray:
    """``model.scores`` without its per-call switch to eval mode and back.

    ``predict_scores`` walks the network twice per call to switch modes (0.7 ms of a 3 ms
    request); the served network is put in eval mode once, when it is loaded, and never
    trained, so the same forward pass and sigmoid give the same scores.
    """
    with torch.inference_mode():
        logits = model.net(torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32)))
        return torch.sigmoid(logits).to(torch.float64).numpy()


def _fingerprint(paths: list[Path]) -> tuple[tuple[int, int, int] | None, ...]:
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class ModelHolder:
    """The served model, loaded from a directory and reloaded when asked or when it changes.

    A load that fails keeps the model served before (if any) and says why in `problem`.
    """

    def __init__(self, directory: Path, sketches: SketchSource | None = None) -> None:
        self.directory = directory
        self.sketches = sketches  # a sketch policy's model reads the node's kept sketches
        self.model: ScoringModel | None = None
        self.problem: str | None = "not loaded yet"
        self._seen: tuple[tuple[int, int, int] | None, ...] | None = None
        self._lock = threading.Lock()

    def _watched(self) -> list[Path]:
        dirs = [self.directory] + ([self.model.source] if self.model is not None else [])
        files = [d / name for d in dirs for name in (MODEL_META, MODEL_WEIGHTS)]
        return [self.directory / PROMOTED_POINTER, *files]

    def load(self) -> bool:
        """(Re)load the model now; True when the served model is the one just read."""
        with self._lock:
            seen = _fingerprint(self._watched())
            try:
                # Checks the width against the feature set (and its cross-bank columns).
                model = load_scoring_model(self.directory, sketches=self.sketches)
                if model.policy.feature_set not in SERVED_SETS:
                    raise ConfigError(
                        f"{model.source}: the model reads feature set "
                        f"{model.policy.feature_set!r}; bank-node serve computes "
                        f"{', '.join(SERVED_SETS)} online (score it in batches: bank-node score)"
                    )
                check_sketch_served(model, SERVED_SETS[model.policy.feature_set].fields.history)
            except (ConfigError, OSError, ValueError) as exc:
                self.problem = str(exc)
                self._seen = seen
                metrics.RELOADS.labels("failed").inc()
                log.error("model not loaded from %s: %s", self.directory, exc)
                return False
            model.net.eval()  # for good: see served_scores
            self.model, self.problem = model, None
            self._seen = _fingerprint(self._watched())
        metrics.RELOADS.labels("loaded").inc()
        metrics.MODEL_LOADED.set(1)
        metrics.MODEL_ROUND.set(model.round if model.round is not None else -1)
        log.info("serving the model in %s (round %s)", model.source, model.round)
        return True

    def reload_if_changed(self) -> bool:
        """Reload when the pointer or a model file changed since the last load."""
        if _fingerprint(self._watched()) == self._seen:
            return False
        return self.load()


def model_version(model: ScoringModel) -> dict[str, Any]:
    """What the answer says about the model: round, registry version (None without one)."""
    return {
        "round": model.round,
        "version": getattr(model, "version", None),  # set when loaded from the registry
        "threshold": model.threshold,
        "label": model.label,
    }


class ScoringService:
    """The routes of the scoring service over a model holder and an account-state store."""

    def __init__(
        self, *, models: ModelHolder, store: SqliteStore, token: str, max_batch: int
    ) -> None:
        self.models = models
        self.store = store
        self.online = OnlineFeatures(store)
        self.max_batch = max_batch
        self._token = token.encode()
        self._lock = threading.Lock()
        # True: each batch is committed before it is answered. `defer_commits` (called by
        # serve_http.serve_forever, whose thread then calls `flush`) commits several at once.
        self.commit_each_batch = True
        self._pending = False  # batches answered but not yet committed

    @property
    def body_limit(self) -> int:
        """Largest body read: a full batch of generous transactions (about 2 KB each)."""
        return 4_096 + 2_048 * self.max_batch

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        read_body: Callable[[int], bytes],
    ) -> Response:
        """Answer one request (header names in lower case); a refusal is a 4xx, one error shape."""
        try:
            return self._route(method, path.split("?", 1)[0], headers, read_body)
        except InputError as exc:
            metrics.ERRORS.labels(exc.reason).inc()
            extra: dict[str, Any] = {}
            if exc.status == 401:
                extra["headers"] = (("WWW-Authenticate", 'Bearer realm="bank-node serve"'),)
            return json_response(exc.status, exc.body(), **extra)

    def _route(
        self, method: str, path: str, headers: Mapping[str, str], read_body: Callable[[int], bytes]
    ) -> Response:
        routes: dict[str, tuple[str, Callable[[], Response]]] = {
            "/healthz": ("GET", lambda: json_response(200, {"status": "ok"})),
            "/readyz": ("GET", self.readiness),
            "/metrics": ("GET", _metrics),
            "/score": ("POST", lambda: self._score(headers, read_body)),
        }
        if path not in routes:
            raise InputError(
                404, "not_found", f"no such path {path}; the paths are {', '.join(routes)}"
            )
        allowed, answer = routes[path]
        if method != allowed:
            raise InputError(405, "not_found", f"{path} answers {allowed} only")
        return answer()

    def readiness(self) -> Response:
        """200 when a model is loaded and the state file takes a write; 503 saying which not."""
        checks = {"model": self.models.problem or "ok", "store": "ok"}
        try:
            with self._lock:
                self.store.check_writable()
        except sqlite3.Error as exc:
            checks["store"] = f"{self.store.path}: {exc}"
        model = self.models.model
        served = model_version(model) if model is not None else None
        if all(v == "ok" for v in checks.values()):
            return json_response(200, {"ready": True, "checks": checks, "model": served})
        failing = [f"{k}: {v}" for k, v in checks.items() if v != "ok"]
        body = {
            "message": "not ready: " + "; ".join(failing),
            "extra": {"checks": checks, "model": served},
        }
        return json_response(503, body)

    def _authorise(self, headers: Mapping[str, str]) -> None:
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self._token
        )
        if not ok:
            raise InputError(
                401,
                "unauthorized",
                "a bearer token is required: Authorization: Bearer <the token in serve.token_file>",
            )

    def _read(self, headers: Mapping[str, str], read_body: Callable[[int], bytes]) -> bytes:
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != JSON:
            raise InputError(
                415,
                "content_type",
                f"Content-Type must be {JSON}, not {media or 'missing'}",
                field="Content-Type",
            )
        try:
            length = int(headers.get("content-length", ""))
        except ValueError:
            raise InputError(411, "invalid", "Content-Length is required",
                             field="Content-Length") from None  # fmt: skip
        if length < 0:
            raise InputError(
                400, "invalid", "Content-Length must not be negative", field="Content-Length"
            )
        if length > self.body_limit:
            raise InputError(
                413,
                "too_large",
                f"the body is {length} bytes; at most "
                f"{self.body_limit} are read (serve.max_batch = {self.max_batch})",
                field="Content-Length",
            )
        return read_body(length)

    def _score(self, headers: Mapping[str, str], read_body: Callable[[int], bytes]) -> Response:
        self._authorise(headers)
        body = self._read(headers, read_body)
        model = self.models.model  # the fields to read depend on the model's feature set
        if model is None:
            raise InputError(503, "no_model", f"no model to score with: {self.models.problem}")
        served = SERVED_SETS[model.policy.feature_set]
        request = parse_body(body, max_batch=self.max_batch, fields=served.fields)
        check_consistent(served, request)
        raw = self._features(request, served)
        if model.cross_bank is not None:  # the two accounts in the latest sketch dated <= t
            raw = np.hstack([raw, served_cross_bank(model.cross_bank, request.transactions)])
        normalised = model.normalise(raw.astype(np.float32))
        scores = served_scores(model, normalised)
        alerts = model.alerts(scores)
        reasons = explain_alerts(model, normalised, raw, scores)
        metrics.SCORED.inc(len(scores))
        metrics.ALERTS.inc(int(alerts.sum()))
        version = model_version(model)
        results = [
            {"index": i, "id": request.ids[i], "score": float(scores[i]),
             "alert": bool(alerts[i]), "model": version, "reasons": reasons[i]}
            for i in range(len(scores))
        ]  # fmt: skip
        return json_response(200, {"results": results} if request.batch else results[0])

    def _features(self, request: ScoreRequest, served: ServedSet) -> np.ndarray:
        """Raw features in the order given: history (if the set reads it), then its own."""
        history = self._history(request) if served.fields.history else None
        return served.features(history, request.values)

    def _history(self, request: ScoreRequest) -> np.ndarray:
        """History features in the order given, computed in timestamp order; state written."""
        transactions = request.transactions
        order = sorted(range(len(transactions)), key=lambda i: transactions[i].timestamp)
        in_time = [transactions[i] for i in order]
        with self._lock:
            problem = order_problem(self.store, in_time)
            if problem is not None:
                index = order[problem[0]]
                field = f"transactions[{index}].timestamp" if request.batch else "timestamp"
                raise InputError(
                    422, "out_of_order", f"{field} {problem[1]}", field=field, index=index
                )
            try:
                self.store.begin()
                rows = self.online.rows(in_time)
                self._prune(in_time[-1].timestamp)
                self.store.keep()
            except sqlite3.Error as exc:
                self._abandon()
                raise _store_error(self.store, exc) from exc
            except Exception:
                self._abandon()  # never leave half a batch in the cache or the file
                raise
            self._written()
        out = np.empty_like(rows)
        out[order] = rows
        return out

    def _abandon(self) -> None:
        """Take back the batch being written; all pending writes if the savepoint is gone."""
        try:
            self.store.undo()
        except sqlite3.Error:
            self.store.rollback()

    def _written(self) -> None:
        """The batch kept: committed now, or by the next `flush` once commits are deferred."""
        if not self.commit_each_batch:
            self._pending = True
            return
        try:
            self.store.commit()
        except sqlite3.Error as exc:
            self.store.rollback()
            raise _store_error(self.store, exc) from exc

    def defer_commits(self) -> None:
        """Commit by `flush` from now on (group commit) and checkpoint by `checkpoint`.

        The caller must then call `flush` every few milliseconds and `flush` once more
        before closing: what a crash loses is what was answered since the last flush.
        """
        with self._lock:
            self.commit_each_batch = False
            self.store.manual_checkpoints()

    def flush(self) -> None:
        """Commit every batch answered since the last commit (a no-op when none was)."""
        with self._lock:
            if not self._pending:
                return
            self._pending = False
            try:
                self.store.commit()
            except sqlite3.Error as exc:
                # Their answers are out: as after a crash, those transactions' history is lost.
                self.store.rollback()
                log.error("account state not committed to %s: %s", self.store.path, exc)

    def checkpoint(self) -> None:
        """Copy the committed log into the state file, without the service's lock."""
        try:
            self.store.checkpoint()
        except sqlite3.Error as exc:
            log.warning("checkpoint of %s failed (retried later): %s", self.store.path, exc)

    def _prune(self, newest: int) -> None:
        pruned = self.store.pruned_at()
        if pruned is None or newest - PRUNE_LAG - pruned >= DAY:
            self.store.prune(newest - PRUNE_LAG)


def _store_error(store: SqliteStore, exc: sqlite3.Error) -> InputError:
    log.error("account state not written to %s: %s", store.path, exc)
    return InputError(503, "store", f"the account state cannot be written: {exc}")


def _metrics() -> Response:
    return Response(200, generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST)
