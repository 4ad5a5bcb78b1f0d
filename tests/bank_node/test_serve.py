"""The scoring service's routes: answers, authentication, readiness, reloads, every refusal a 4xx."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bank_node.feature_store import SqliteStore
from bank_node.serve import ModelHolder, ScoringService
from bank_node.serve_http import make_server
from models.features import FEATURE_NAMES
from tests.bank_node.serve_helpers import (
    AUTH,
    TOKEN,
    answer,
    make_service,
    post,
    save_test_model,
    transaction,
)


@pytest.fixture
def service(tmp_path: Path):
    return make_service(tmp_path)


def test_one_transaction_gets_a_score_an_alert_the_model_and_reasons(service):
    response = post(service, transaction(id="tx-1"))
    assert response.status == 200
    body = answer(response)
    assert 0.0 < body["score"] < 1.0
    assert body["alert"] == (body["score"] >= 0.5)
    assert body["model"] == {"round": None, "version": None, "threshold": 0.5,
                             "label": "local-only"}  # fmt: skip
    assert body["id"] == "tx-1" and body["index"] == 0
    assert bool(body["reasons"]) == body["alert"]  # reasons for alerts only


def test_an_alert_carries_its_top_reasons_in_plain_words_and_a_quiet_one_none(tmp_path: Path):
    for threshold, alerting in ((0.0, True), (1.0, False)):
        directory = tmp_path / str(threshold)
        save_test_model(directory / "model", threshold=threshold)
        holder = ModelHolder(directory / "model")
        holder.load()
        store = SqliteStore(directory / "accounts.sqlite3")
        service = ScoringService(models=holder, store=store, token=TOKEN, max_batch=10)
        body = answer(post(service, transaction()))
        assert body["alert"] is alerting
        if not alerting:
            assert body["reasons"] == []
            continue
        assert 1 <= len(body["reasons"]) <= 3
        for reason in body["reasons"]:
            assert reason["feature"] in FEATURE_NAMES and reason["contribution"] > 0
            assert isinstance(reason["text"], str) and reason["text"]
        contributions = [r["contribution"] for r in body["reasons"]]
        assert contributions == sorted(contributions, reverse=True)


def test_a_batch_is_answered_in_the_order_sent_and_equals_the_same_stream(tmp_path: Path):
    batch = [transaction(5, id="late"), transaction(1, id="early"), transaction(3, to_account="C")]
    batch_answer = answer(post(make_service(tmp_path / "a"), {"transactions": batch}))
    streamed = make_service(tmp_path / "b")
    in_time = sorted(batch, key=lambda tx: tx["timestamp"])
    singles = {tx["timestamp"]: answer(post(streamed, tx))["score"] for tx in in_time}
    results = batch_answer["results"]
    assert [r["id"] for r in results] == ["late", "early", None]
    assert [r["score"] for r in results] == [singles[tx["timestamp"]] for tx in batch]


def test_history_changes_the_score_of_the_same_transaction(service):
    first = answer(post(service, transaction(1)))["score"]
    again = answer(post(service, transaction(2)))["score"]
    assert first != again  # the second sees the first: velocity, recency, pair count


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "application/json"}, {**AUTH, "authorization": "Bearer wrong-token"},
     {**AUTH, "authorization": f"Basic {TOKEN}"}],
)  # fmt: skip
def test_a_request_without_the_token_is_401(service, headers):
    response = post(service, transaction(), headers=headers)
    assert response.status == 401
    assert ("WWW-Authenticate", 'Bearer realm="bank-node serve"') in response.headers
    assert "bearer token" in answer(response)["message"]


BAD: list[tuple[str, Any, int, str | None, int | None, str]] = [
    ("missing field", {k: v for k, v in transaction().items() if k != "to_bank"}, 422,
     "to_bank", 0, "missing field to_bank"),
    ("amount as text", transaction(amount_paid="1000"), 422, "amount_paid", 0, "non-negative"),
    ("negative amount", transaction(amount_received=-1), 422, "amount_received", 0, "non-negative"),
    ("account as a number", transaction(from_account=17), 422, "from_account", 0, "string"),
    ("bad timestamp", transaction(timestamp="yesterday"), 422, "timestamp", 0, "2022/09/01"),
    ("timestamp as a number", transaction(timestamp=1662026400), 422, "timestamp", 0, "timestamp"),
    ("unknown currency", transaction(payment_currency="Dollar"), 422, "payment_currency", 0,
     "did you mean"),
    ("unknown format", transaction(payment_format="Telex"), 422, "payment_format", 0, "Wire"),
    ("format as a list", transaction(payment_format=["Wire"]), 422, "payment_format", 0, "Wire"),
    ("unknown field", transaction(amount_payed=3), 422, "amount_payed", 0, "amount_paid"),
    ("bad field in a batch", {"transactions": [transaction(), transaction(to_bank="")]}, 422,
     "transactions[1].to_bank", 1, "non-empty"),
    ("not an object in a batch", {"transactions": [transaction(), 7]}, 422, "transactions[1]",
     1, "JSON object"),
    ("empty batch", {"transactions": []}, 422, "transactions", None, "non-empty list"),
    ("batch beside other keys", {"transactions": [transaction()], "x": 1}, 422, "x", None,
     "only transactions"),
    ("oversized batch", {"transactions": [transaction()] * 4}, 413, "transactions", None,
     "at most 3"),
    ("a list body", [transaction()], 400, None, None, "JSON object"),
    ("not JSON", b"{'timestamp': ", 400, None, None, "not JSON"),
    ("not UTF-8", b"\xff\xfe{}", 400, None, None, "not JSON"),
    ("huge number", b'{"amount_paid": 1e999}', 422, "timestamp", 0, "missing field"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "payload", "status", "field", "index", "words"), BAD,
                         ids=[b[0] for b in BAD])  # fmt: skip
def test_bad_input_is_a_4xx_naming_the_field_and_the_index(
    tmp_path: Path, case, payload, status, field, index, words
):
    service = make_service(tmp_path, max_batch=3)
    response = post(service, payload)
    body = answer(response)
    assert response.status == status, body
    assert body["extra"] == {"field": field, "index": index}
    assert words in body["message"]


def test_a_huge_integer_amount_is_refused_not_overflowed(service):
    response = post(service, json.dumps(transaction(amount_paid=10**400)).encode())
    assert response.status == 422 and answer(response)["extra"]["field"] == "amount_paid"


def test_a_wrong_content_type_is_415(service):
    body = json.dumps(transaction()).encode()
    headers = {**AUTH, "content-type": "text/csv", "content-length": str(len(body))}
    response = service.handle("POST", "/score", headers, lambda n: body)
    assert response.status == 415 and answer(response)["extra"]["field"] == "Content-Type"


def test_a_body_over_the_limit_is_refused_before_it_is_read(service):
    headers = {**AUTH, "content-length": str(service.body_limit + 1)}

    def read(n: int) -> bytes:
        raise AssertionError("the body was read")

    assert service.handle("POST", "/score", headers, read).status == 413


def test_a_refused_batch_changes_no_account(service):
    assert (
        post(service, {"transactions": [transaction(1), transaction(2, to_bank="")]}).status == 422
    )
    again = answer(post(service, {"transactions": [transaction(1), transaction(2)]}))["results"]
    fresh = answer(post(make_service(service.store.path.parent.parent / "other"),
                        {"transactions": [transaction(1), transaction(2)]}))["results"]  # fmt: skip
    assert [r["score"] for r in again] == [r["score"] for r in fresh]


def test_a_transaction_before_its_accounts_last_one_is_422_naming_it(service):
    assert post(service, transaction(30)).status == 200
    response = post(service, {"transactions": [transaction(31, from_account="Z"), transaction(10)]})
    body = answer(response)
    assert response.status == 422
    assert body["extra"] == {"field": "transactions[1].timestamp", "index": 1}
    assert "account 011/A1" in body["message"]
    single = post(service, transaction(11))
    assert answer(single)["extra"] == {"field": "timestamp", "index": 0}


def test_without_a_model_scoring_is_503_and_readiness_says_why(tmp_path: Path):
    service = make_service(tmp_path, model=False)
    assert post(service, transaction()).status == 503
    ready = service.handle("GET", "/readyz", {}, lambda n: b"")
    assert ready.status == 503 and "global_model.json does not exist" in answer(ready)["message"]
    save_test_model(tmp_path / "model")
    assert service.models.reload_if_changed()
    assert service.handle("GET", "/readyz", {}, lambda n: b"").status == 200
    assert post(service, transaction()).status == 200


def test_readiness_fails_when_the_state_file_takes_no_write(service):
    service.store.close()
    ready = service.handle("GET", "/readyz", {}, lambda n: b"")
    assert ready.status == 503 and answer(ready)["extra"]["checks"]["store"] != "ok"


def test_a_changed_model_directory_is_reloaded_and_served(service, tmp_path: Path):
    assert answer(post(service, transaction(1)))["model"]["threshold"] == 0.5
    assert not service.models.reload_if_changed()
    save_test_model(tmp_path / "model", threshold=0.9, seed=1)
    assert service.models.reload_if_changed()
    assert answer(post(service, transaction(2)))["model"]["threshold"] == 0.9


def test_a_broken_model_on_reload_keeps_the_one_served(service, tmp_path: Path):
    (tmp_path / "model" / "global_model.json").write_text("{not json")
    assert not service.models.reload_if_changed()
    assert post(service, transaction()).status == 200
    assert "not a model description" in (service.models.problem or "")


def test_unknown_paths_and_methods_are_4xx(service):
    assert service.handle("GET", "/nope", {}, lambda n: b"").status == 404
    assert service.handle("GET", "/score", {}, lambda n: b"").status == 405
    assert service.handle("GET", "/healthz?x=1", {}, lambda n: b"").status == 200


@pytest.fixture
def running(service):
    server = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_over_http_a_transaction_is_scored_and_counted_in_the_metrics(running):
    data = json.dumps(transaction()).encode()
    status, body = _http(f"{running}/score", data,
                         {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})  # fmt: skip
    assert status == 200 and "score" in json.loads(body)
    status, text = _http(f"{running}/metrics")
    assert status == 200
    assert b"bank_node_serve_scored_total" in text
    assert b'bank_node_serve_request_duration_seconds_count{path="/score",status="2xx"}' in text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {TOKEN}"},
     {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json; charset=utf-8"}],
)  # fmt: skip
@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"[[[[[[" * 5000, b'{"transactions": 1}'])
def test_over_http_garbage_is_never_a_500(running, headers, data):
    status, body = _http(f"{running}/score", data, headers)
    assert 400 <= status < 500
    assert "message" in json.loads(body)


def test_a_negative_content_length_is_400_not_a_read_to_the_end(service):
    headers = {**AUTH, "content-length": "-5"}

    def read(n: int) -> bytes:
        raise AssertionError("the body was read")

    response = service.handle("POST", "/score", headers, read)
    assert response.status == 400 and answer(response)["extra"]["field"] == "Content-Length"


def test_over_http_a_body_shorter_than_announced_frees_the_connection(running, monkeypatch):
    monkeypatch.setattr("bank_node.serve_http._Handler.timeout", 0.5)
    host, port = running.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )  # fmt: skip
        assert raw.recv(100) == b""  # closed by the server, without an answer
    status, _ = _http(f"{running}/healthz")
    assert status == 200
