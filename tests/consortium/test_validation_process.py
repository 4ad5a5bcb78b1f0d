"""Uploads are checked in a niced helper process per web worker, and nothing is lost when
it dies: the refusals, the acceptances and their messages are the same as in-process."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from django.test import Client

from consortium.rounds import validation_pool
from consortium.rounds.models import Round, Submission
from consortium.rounds.validation_worker import NICENESS
from tests.conftest import encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


def _put(client: Client, rnd: Round, persona: Any, body: bytes) -> Any:
    return client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(persona, rnd.number, body),
    )


@pytest.fixture(autouse=True)
def _validation_process(settings: Any) -> None:
    settings.VALIDATION_PROCESS = True


def test_the_check_runs_in_another_process_at_a_lower_cpu_priority():
    pid = validation_pool.validator_pid()
    assert pid != os.getpid()
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(mine + NICENESS, 19)


def test_an_upload_checked_there_is_accepted_and_its_epoch_context_is_sent_once(
    client, ckks, open_round, bank_alpha, bank_beta
):
    validation_pool._reset()
    for persona, seed in ((bank_alpha, 1), (bank_beta, 2)):
        body, _ = encrypted_update(ckks, open_round.vector_length, seed=seed)
        assert _put(client, open_round, persona, body).status_code == 201
    assert validation_pool._sent == {open_round.key_epoch.fingerprint}
    assert Submission.objects.filter(round=open_round).count() == 2


def test_a_refusal_found_there_reaches_the_bank_with_its_reason(
    client, ckks, open_round, bank_alpha
):
    body, _ = encrypted_update(ckks, open_round.vector_length - 1)
    answer = _put(client, open_round, bank_alpha, body)
    assert answer.status_code == 400
    assert "model needs" in answer.json()["message"]
    assert not Submission.objects.filter(round=open_round).exists()


def test_when_the_process_dies_the_upload_is_still_checked_and_a_new_one_takes_over(
    client, ckks, open_round, bank_alpha, bank_beta
):
    first = validation_pool.validator_pid()
    os.kill(first, signal.SIGKILL)
    body, _ = encrypted_update(ckks, open_round.vector_length, seed=3)
    assert _put(client, open_round, bank_alpha, body).status_code == 201
    second = validation_pool.validator_pid()
    assert second != first
    # The new process had no context: it is sent again, and the next upload is accepted.
    body, _ = encrypted_update(ckks, open_round.vector_length, seed=4)
    assert _put(client, open_round, bank_beta, body).status_code == 201
    assert validation_pool._sent == {open_round.key_epoch.fingerprint}


def test_switched_off_the_check_runs_in_the_web_worker(
    client, ckks, open_round, bank_alpha, settings
):
    settings.VALIDATION_PROCESS = False
    validation_pool._reset()
    body, _ = encrypted_update(ckks, open_round.vector_length, seed=5)
    assert _put(client, open_round, bank_alpha, body).status_code == 201
    assert validation_pool._pool is None
