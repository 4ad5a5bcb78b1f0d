"""Whatever the portal sends or an aggregate decrypts to, `Agent.run` goes on (issue 13, item 1).

A real agent and a real ``BankClient`` talk to a fake portal over a fake HTTP session, so
every answer goes through the client's parse paths. Each test publishes an honest round 1,
then one bad thing; the node must refuse it (logged, counted), keep round 1's model, and
still adopt an honest round 3 afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node import metrics as node_metrics
from bank_node.agent import Agent
from bank_node.config import Guardrails
from bank_node.keys import PUBLIC_CONTEXT
from bank_node.portal_client import BankClient, PortalError
from he.aggregate import sum_vectors
from he.codec import STATS_COUNT_UNIT, encrypt_to_file, encrypt_vector, pack_update
from he.integrity import tag_value
from he.keys import (
    fingerprint,
    generate_secret_context,
    load_public_context,
    public_context_bytes,
)
from he.params import CkksParams
from he.signing import public_key_b64
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector
from protocol import RoundInfo
from simulation.world import generate_world
from tests.bank_node.roster_fakes import objection_verifies
from tests.bank_node.test_node_integrity import BANKS, SPEC, Portal, _round, make_node

FEATURES = len(FEATURE_NAMES)
Answer = tuple[int, bytes]


class Response:
    """What ``requests`` would hand the client: a status, a body, headers."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status_code, self.content, self.headers = status, body, headers or {}
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def iter_content(self, size: int) -> Iterator[bytes]:
        for start in range(0, len(self.content), size):
            yield self.content[start : start + size]


class Session:
    """The portal over HTTP: ``Portal``'s rounds and blobs, or an ``override`` for a path."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.headers: dict[str, str] = {}
        self.override: dict[str, Answer] = {}
        self.objections: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        path = url.split("/api/v1/", 1)[1]
        if path in self.override:
            return Response(*self.override[path])
        if method == "POST":
            if path == "objections":
                self.objections.append(kwargs["json"])
            return Response(201, b'{"received": true}')
        return self.get(path)

    def get(self, path: str) -> Response:
        portal = self.portal
        if path == "rounds/current":
            return Response(204, b"")
        if path.startswith("rounds/?"):
            results = [r.to_dict() for r in portal.rounds(5)]
            page = {"count": len(results), "next": None, "previous": None, "results": results}
            return Response(200, json.dumps(page).encode())
        number = int(path.split("/")[1])
        if path.endswith("/aggregate"):
            blob = portal.blobs[number]
            return Response(200, blob, {"X-Aggregate-Digest": hashlib.sha256(blob).hexdigest()})
        return Response(200, json.dumps(portal.published[number].to_dict()).encode())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=2, preset="tiny", seed=5)
    return out


@pytest.fixture
def node(tmp_path: Path, world: Path) -> tuple[Agent, Portal, Session]:
    agent, portal = make_node(tmp_path, world)
    client = BankClient("http://portal.test", "credential", max_retries=0)
    session = Session(portal)
    client.session = session  # type: ignore[assignment]  # a fake HTTP session
    agent.client = agent.models.client = agent.objector.client = client
    # As with a pinned roster: refusals are sent as signed objections.
    agent.objector.consortium_id = lambda: "consortium-1"
    agent.config = replace(agent.config, poll_interval_seconds=0.0)
    agent.state.submitted = {str(n): f"{n:02d}" * 32 for n in range(1, 6)}
    return agent, portal, session


def _aggregate(
    agent: Agent, tmp: Path, number: int, vectors: list[np.ndarray], counts: tuple[int, ...]
) -> bytes:
    """The portal's sum of three members' tagged updates of round ``number``."""
    keys, paths = agent.keys, []
    unit = STATS_COUNT_UNIT if vectors[0].size == 2 * FEATURES else 1
    for bank, values, n in zip(BANKS, vectors, counts, strict=True):
        tag = tag_value(keys.integrity_key, keys.fingerprint, number, bank)
        paths.append(tmp / f"{bank}-{number}.ckks")
        packed = pack_update(values, n, tag, unit)
        encrypt_to_file(keys.secret_context, packed, keys.params, keys.fingerprint, paths[-1])
    out = io.BytesIO()
    public = load_public_context((tmp / PUBLIC_CONTEXT).read_bytes(), keys.params)
    sum_vectors(paths, public, keys.params, out)
    return out.getvalue()


def _models(seed: int, shift: float = 0.0) -> list[np.ndarray]:
    """Three members' models near the policy's initial weights (``shift`` added to each)."""
    base = model_to_vector(build_model(SPEC, FEATURES))
    rng = np.random.default_rng(seed)
    return [base + shift + rng.normal(0, 0.01, base.size) for _ in BANKS]


def _publish(
    portal: Portal, number: int, blob: bytes, fp: str, **fields: Any
) -> tuple[bytes, RoundInfo]:
    portal.blobs[number] = blob
    portal.published[number] = _round(number, fp, blob, **fields)
    return blob, portal.published[number]


def _honest(agent: Agent, portal: Portal, tmp: Path, number: int, **fields: Any) -> np.ndarray:
    """Publish an honest round ``number``; its FedAvg."""
    models, counts = _models(number), (100, 200, 300)
    blob = _aggregate(agent, tmp, number, models, counts)
    _publish(portal, number, blob, agent.keys.fingerprint, **fields)
    return np.asarray(sum(m * n for m, n in zip(models, counts, strict=True)) / sum(counts))


def _refusals(reason: str) -> float:
    return node_metrics.REFUSALS.labels(reason)._value.get()


def _model(agent: Agent) -> np.ndarray:
    return np.load(agent.config.state_dir / "global_model.npy")


def _objected(agent: Agent, session: Session, reason: str, number: int) -> None:
    """One objection with ``reason`` about round ``number``, signed under the bank's key."""
    sent = [o for o in session.objections if o["objection"]["reason_code"] == reason]
    assert [o["objection"]["round_number"] for o in sent] == [number]
    key = public_key_b64(agent.keys.signing_key)
    assert objection_verifies(sent[0]["objection"], sent[0]["signature"], key)


def _survives(
    agent: Agent,
    portal: Portal,
    tmp: Path,
    caplog: pytest.LogCaptureFixture,
    reason: str,
    bad: Callable[[], None],
    heal: Callable[[], None] = lambda: None,
    **honest: Any,
) -> None:
    """Round 1 adopted; ``bad`` refused as ``reason``; round 1's model kept; round 3 adopted
    (after ``heal``, for a fault that would hide every later round)."""
    first = _honest(agent, portal, tmp, 1, **honest)
    agent.step()
    assert set(agent.state.evaluated) == {"1"}
    before = _refusals(reason)
    bad()
    with caplog.at_level(logging.ERROR, logger="bank_node"):
        agent.step()
    assert _refusals(reason) == before + 1
    assert f"REFUSED ({reason})" in caplog.text
    assert np.allclose(_model(agent), first, atol=1e-6)  # the last good model stays
    heal()
    third = _honest(agent, portal, tmp, 3, **honest)
    agent.run(max_rounds=2, idle_exit_seconds=30)
    assert "3" in agent.state.evaluated
    assert np.allclose(_model(agent), third, atol=1e-6)


@pytest.mark.parametrize(
    "path, body",
    [
        ("rounds/current", b"{not json"),
        ("rounds/current", b'{"number": "four"}'),
        ("rounds/current", b"[" * 100_000 + b"]" * 100_000),
        ("rounds/?limit=5", b'{"count": 1, "next": null, "previous": null, "results": [7]}'),
        ("rounds/2", b'{"number": 2, "state": ["published"]}'),
    ],
    ids=["not-json", "wrong-types", "nested-too-deep", "listing-of-numbers", "round-detail"],
)
def test_a_malformed_answer_of_the_portal_is_refused_and_the_node_goes_on(
    node, tmp_path, caplog, path, body
):
    agent, portal, session = node

    def bad() -> None:
        if path != "rounds/current":  # a round the broken answer must keep from use
            _honest(agent, portal, tmp_path, 2)
        session.override[path] = (200, body)

    _survives(agent, portal, tmp_path, caplog, "portal_malformed", bad, session.override.clear)
    _objected(agent, session, "portal_malformed", 2 if path == "rounds/2" else 0)


def test_a_huge_manifest_is_refused_before_any_tag_is_computed(node, tmp_path, caplog):
    agent, portal, session = node
    fp = agent.keys.fingerprint

    def bad() -> None:
        blob = _aggregate(agent, tmp_path, 2, _models(2), (100, 200, 300))
        inputs = [{"bank": f"bank-{i}", "digest": "ab" * 32} for i in range(20_000)]
        digest = hashlib.sha256(blob).hexdigest()
        manifest = {"round": 2, "key_epoch": fp, "aggregate_digest": digest, "inputs": inputs}
        _publish(portal, 2, blob, fp, manifest=manifest)

    _survives(agent, portal, tmp_path, caplog, "cohort", bad)
    _objected(agent, session, "cohort", 2)
    assert "20000 inputs" in agent.state.refused["2"]


def _other_epoch() -> bytes:
    """A well-formed aggregate under another consortium key."""
    params = CkksParams()
    secret = generate_secret_context(params)
    size = model_to_vector(build_model(SPEC, FEATURES)).size
    values = pack_update(np.zeros(size), 600, 4.5)
    out = io.BytesIO()
    encrypt_vector(secret, values, params, fingerprint(public_context_bytes(secret)), out)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "other-epoch"])
def test_an_aggregate_file_that_does_not_decrypt_is_refused(node, tmp_path, caplog, kind):
    agent, portal, session = node
    fp = agent.keys.fingerprint

    def bad() -> None:
        honest = _aggregate(agent, tmp_path, 2, _models(2), (100, 200, 300))
        blob = {
            "garbage": lambda: np.random.default_rng(0).bytes(5000),
            "truncated": lambda: honest[: len(honest) // 2],
            "other-epoch": _other_epoch,
        }[kind]()
        _publish(portal, 2, blob, fp)

    _survives(agent, portal, tmp_path, caplog, "aggregate_integrity", bad)
    _objected(agent, session, "aggregate_integrity", 2)


def test_a_decrypted_vector_with_nan_is_refused(node, tmp_path, caplog, monkeypatch):
    agent, portal, session = node
    decrypt = agent.models.decrypt_aggregate

    def poisoned(path: Path, epoch: str, *, masked: bool = False) -> np.ndarray:
        values = decrypt(path, epoch, masked=masked)
        if "round-2" in path.name:
            values[0] = np.nan
        return values

    def bad() -> None:
        _honest(agent, portal, tmp_path, 2)
        monkeypatch.setattr(agent.models, "decrypt_aggregate", poisoned)

    _survives(agent, portal, tmp_path, caplog, "aggregate_integrity", bad)
    _objected(agent, session, "aggregate_integrity", 2)
    assert "not finite" in agent.state.refused["2"]


def _statistics(agent: Agent, portal: Portal, tmp: Path, number: int) -> None:
    """A statistics round over 600 training rows: the consortium total."""
    rng = np.random.default_rng(number)
    moments = [
        np.concatenate([rng.uniform(0, 1, FEATURES), rng.uniform(1, 2, FEATURES)]) for _ in BANKS
    ]
    blob = _aggregate(agent, tmp, number, moments, (100, 200, 300))
    _publish(portal, number, blob, agent.keys.fingerprint, kind="statistics")


def test_a_count_beyond_the_consortium_total_is_refused(node, tmp_path, caplog):
    agent, portal, session = node
    fp = agent.keys.fingerprint
    _statistics(agent, portal, tmp_path, 10)

    def bad() -> None:
        blob = _aggregate(agent, tmp_path, 2, _models(2), (100, 200, 1_000_000))
        _publish(portal, 2, blob, fp, stats_round=10)

    _survives(agent, portal, tmp_path, caplog, "aggregate_count", bad, stats_round=10)
    _objected(agent, session, "aggregate_count", 2)
    assert "more than the 600" in agent.state.refused["2"]


def test_a_model_far_from_the_previous_one_is_refused(node, tmp_path, caplog):
    agent, portal, session = node
    agent.config = replace(agent.config, guardrails=Guardrails(max_update_ratio=0.5))
    agent.models.config = agent.config
    fp = agent.keys.fingerprint

    def bad() -> None:
        blob = _aggregate(agent, tmp_path, 2, _models(2, shift=100.0), (100, 200, 300))
        _publish(portal, 2, blob, fp)

    _survives(agent, portal, tmp_path, caplog, "update_too_large", bad)
    _objected(agent, session, "update_too_large", 2)
    assert "max_update_ratio is 0.5" in agent.state.refused["2"]


def test_run_survives_an_unexpected_exception_in_one_step(node, tmp_path, caplog, monkeypatch):
    agent, portal, _ = node
    first = _honest(agent, portal, tmp_path, 1)
    second = _honest(agent, portal, tmp_path, 2)
    evaluate = agent.evaluate_published
    failed: list[int] = []

    def flaky(rnd: RoundInfo) -> dict[str, Any]:
        if rnd.number == 2 and not failed:
            failed.append(rnd.number)
            raise RuntimeError("a bug nobody anticipated")
        return evaluate(rnd)

    monkeypatch.setattr(agent, "evaluate_published", flaky)
    before = node_metrics.UNEXPECTED_ERRORS.labels("evaluate")._value.get()
    with caplog.at_level(logging.ERROR, logger="bank_node"):
        agent.run(max_rounds=2, idle_exit_seconds=30)

    assert failed == [2] and set(agent.state.evaluated) == {"1", "2"}
    assert node_metrics.UNEXPECTED_ERRORS.labels("evaluate")._value.get() == before + 1
    assert "round 2: unexpected RuntimeError" in caplog.text
    assert "a bug nobody anticipated" in caplog.text  # the traceback is logged
    assert not np.allclose(first, second) and np.allclose(_model(agent), second, atol=1e-6)


def test_a_round_failing_unexpectedly_at_every_poll_is_given_up(node, tmp_path, monkeypatch):
    agent, portal, _ = node
    _honest(agent, portal, tmp_path, 1)

    def broken(rnd: RoundInfo) -> dict[str, Any]:
        raise OSError("disk full")

    monkeypatch.setattr(agent, "evaluate_published", broken)
    for _ in range(4):
        agent.step()
    assert "gave up after 3 unexpected errors: OSError: disk full" in agent.state.refused["1"]
    assert "1" not in agent.state.evaluated


def test_keyboard_interrupt_still_stops_the_node(node, monkeypatch):
    agent, _, _ = node

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(agent.client, "current_round", interrupted)
    with pytest.raises(KeyboardInterrupt):
        agent.run(max_rounds=1)


def test_a_round_whose_model_spec_builds_no_model_is_sat_out_before_training(node):
    agent, _, session = node
    fp = agent.keys.fingerprint
    bad_spec = {**SPEC, "hidden": [-4]}
    rnd = _round(9, fp, state="open", manifest={})
    rnd = replace(rnd, policy=replace(rnd.policy, model_spec=bad_spec))
    before = _refusals("model_invalid")

    assert agent.participate(rnd) is False

    assert "model spec" in agent.state.skipped["9"]
    assert _refusals("model_invalid") == before + 1
    _objected(agent, session, "model_invalid", 9)


@pytest.mark.parametrize(
    "status, body, message",
    [
        (400, b"[1, 2]", "[1, 2]"),
        (404, b"[" * 100_000 + b"]" * 100_000, "[[[["),
        (409, b'{"message": "late", "extra": [1]}', "late"),
    ],
    ids=["error-as-a-list", "error-nested-too-deep", "extra-not-an-object"],
)
def test_an_error_answer_of_any_shape_is_a_portal_error_and_run_goes_on(
    node, tmp_path, status, body, message
):
    agent, portal, session = node
    session.override["rounds/current"] = (status, body)
    with pytest.raises(PortalError) as caught:
        agent.client.current_round()
    assert caught.value.status == status and caught.value.message.startswith(message)
    assert caught.value.extra == {}
    polls = node_metrics.POLL_ERRORS._value.get()
    session.override["rounds/?limit=5"] = (status, body)  # the whole poll fails, as when down
    first = _honest(agent, portal, tmp_path, 1)
    agent.run(max_rounds=1, idle_exit_seconds=1)
    assert node_metrics.POLL_ERRORS._value.get() > polls and "1" not in agent.state.evaluated
    session.override.clear()
    agent.run(max_rounds=1, idle_exit_seconds=30)
    assert np.allclose(_model(agent), first, atol=1e-6)
