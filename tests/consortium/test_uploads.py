"""Every bad upload gets a clear 4xx and leaves the round exactly as it was."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from django.test import Client

from consortium.rounds.models import Round, RoundState, Submission
from he.codec import encrypt_vector
from he.keys import generate_secret_context
from he.signing import sign, update_message_v2
from tests.conftest import PARAMS, Persona, encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


def _put(client: Client, number: int, body: bytes, headers: dict[str, Any]) -> Any:
    return client.put(
        f"/api/v1/rounds/{number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )


def _state(rnd: Round) -> tuple[str, int, list[str]]:
    rnd.refresh_from_db()
    return (
        rnd.state,
        rnd.submissions.count(),
        sorted(rnd.submissions.values_list("digest", flat=True)),
    )


def _length(rnd: Round) -> int:
    return int(rnd.vector_length)


def test_a_valid_signed_update_is_accepted_and_stored(client, ckks, open_round, bank_alpha):
    body, _ = encrypted_update(ckks, _length(open_round))
    response = _put(
        client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert response.status_code == 201, response.json()
    sub = Submission.objects.get(round=open_round, bank=bank_alpha.bank)
    assert sub.digest == hashlib.sha256(body).hexdigest()
    assert sub.size_bytes == len(body)


def test_retrying_the_same_upload_is_idempotent_and_a_different_one_is_refused(
    client, ckks, open_round, bank_alpha
):
    body, _ = encrypted_update(ckks, _length(open_round), seed=1)
    headers = upload_headers(bank_alpha, open_round.number, body)
    assert _put(client, open_round.number, body, headers).status_code == 201
    again = _put(client, open_round.number, body, headers)
    assert again.status_code == 200
    assert again.json()["digest"] == hashlib.sha256(body).hexdigest()
    other, _ = encrypted_update(ckks, _length(open_round), seed=2)
    refused = _put(
        client, open_round.number, other, upload_headers(bank_alpha, open_round.number, other)
    )
    assert refused.status_code == 409
    assert "already submitted" in refused.json()["message"]
    assert Submission.objects.filter(round=open_round).count() == 1


def _random(ckks, rnd):
    return np.random.default_rng(7).bytes(4096)


def _truncated(ckks, rnd):
    body, _ = encrypted_update(ckks, _length(rnd))
    return body[: len(body) - 1000]


def _wrong_length(ckks, rnd):
    body, _ = encrypted_update(ckks, _length(rnd) - 1)
    return body


def _other_context(ckks, rnd):
    other = generate_secret_context(PARAMS)
    body, _ = encrypted_update(ckks, _length(rnd), secret=other, fp="0" * 64)
    return body


def _other_context_same_fingerprint(ckks, rnd):
    # Another key set claiming our fingerprint, under larger CKKS parameters: its
    # ciphertexts are bigger than the round's parameters allow, so the round's own size
    # limit refuses it before a byte is read (it used to be read and refused by the header).
    import io

    from he.params import CkksParams

    other = generate_secret_context(CkksParams(8192, (60, 40, 60), 28))
    buf = io.BytesIO()
    encrypt_vector(
        other, np.zeros(_length(rnd)), CkksParams(8192, (60, 40, 60), 28), ckks.fingerprint, buf
    )
    return buf.getvalue()


@pytest.mark.parametrize(
    "make_body, status, message",
    [
        (lambda c, r: b"", 400, "empty"),
        (_random, 400, "CKKSVEC1"),
        (_truncated, 400, "truncated"),
        (_wrong_length, 400, "model needs"),
        (_other_context, 400, "key epoch"),
        (_other_context_same_fingerprint, 413, "byte limit"),
    ],
    ids=["empty", "random-bytes", "truncated", "wrong-length", "other-key-epoch", "other-params"],
)
def test_malformed_bodies_are_refused_and_the_round_is_unchanged(
    client, ckks, open_round, bank_alpha, make_body, status, message
):
    before = _state(open_round)
    body = make_body(ckks, open_round)
    response = _put(
        client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert response.status_code == status, response.content
    assert message in response.json()["message"]
    assert _state(open_round) == before


def test_an_oversized_body_is_refused_with_413(client, ckks, open_round, bank_alpha, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    body, _ = encrypted_update(ckks, _length(open_round))
    response = _put(
        client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert response.status_code == 413
    assert "limit" in response.json()["message"]
    assert open_round.submissions.count() == 0


def test_a_body_altered_in_transit_fails_the_digest_check(client, ckks, open_round, bank_alpha):
    body, _ = encrypted_update(ckks, _length(open_round))
    headers = upload_headers(bank_alpha, open_round.number, body)
    tampered = bytearray(body)
    tampered[len(body) // 2] ^= 0x10
    response = _put(client, open_round.number, bytes(tampered), headers)
    assert response.status_code == 400
    assert open_round.submissions.count() == 0


@pytest.mark.parametrize("signature", ["", "not-base64!", "A" * 88])
def test_a_missing_or_bad_signature_is_refused(client, ckks, open_round, bank_alpha, signature):
    body, _ = encrypted_update(ckks, _length(open_round))
    headers = upload_headers(bank_alpha, open_round.number, body)
    headers["HTTP_X_UPDATE_SIGNATURE"] = signature
    response = _put(client, open_round.number, body, headers)
    assert response.status_code in (400, 403)
    assert "signature" in response.json()["message"].lower()
    assert open_round.submissions.count() == 0


def test_a_signature_by_another_bank_is_refused(client, ckks, open_round, bank_alpha, bank_beta):
    body, _ = encrypted_update(ckks, _length(open_round))
    response = _put(
        client,
        open_round.number,
        body,
        upload_headers(bank_alpha, open_round.number, body, signer=bank_beta),
    )
    assert response.status_code == 403
    assert open_round.submissions.count() == 0


def test_an_upload_replayed_into_a_later_round_is_refused(client, ckks, open_round, bank_alpha):
    body, _ = encrypted_update(ckks, _length(open_round))
    headers = upload_headers(bank_alpha, open_round.number, body)
    # The same bytes and signature, aimed at another round number: the signature binds it.
    Round.objects.filter(pk=open_round.pk).update(number=open_round.number + 1)
    response = _put(client, open_round.number + 1, body, headers)
    assert response.status_code == 403


@pytest.mark.parametrize("state", [RoundState.PUBLISHED, RoundState.FAILED, RoundState.AGGREGATING])
def test_an_upload_to_a_closed_round_is_refused(client, ckks, open_round, bank_alpha, state):
    Round.objects.filter(pk=open_round.pk).update(state=state)
    body, _ = encrypted_update(ckks, _length(open_round))
    response = _put(
        client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert response.status_code == 409
    assert state in response.json()["message"]


def test_an_upload_after_the_deadline_is_refused(client, ckks, open_round, bank_alpha):
    from django.utils import timezone

    Round.objects.filter(pk=open_round.pk).update(deadline_at=timezone.now())
    body, _ = encrypted_update(ckks, _length(open_round))
    response = _put(
        client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert response.status_code == 409
    assert "deadline" in response.json()["message"]


def test_an_upload_to_an_unknown_round_is_404(client, ckks, open_round, bank_alpha):
    body, _ = encrypted_update(ckks, _length(open_round))
    response = _put(client, 999, body, upload_headers(bank_alpha, 999, body))
    assert response.status_code == 404
    assert "999" in response.json()["message"]


@pytest.mark.parametrize("action", ["suspend", "revoke"])
def test_a_suspended_or_revoked_bank_can_do_nothing(client, ckks, open_round, bank_alpha, action):
    from consortium.members.models import BankStatus
    from consortium.members.services import bank_set_status

    status = BankStatus.SUSPENDED if action == "suspend" else BankStatus.REVOKED
    bank_set_status(bank=bank_alpha.bank, status=status, actor="test")
    body, _ = encrypted_update(ckks, _length(open_round))
    upload = _put(
        client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert upload.status_code == 401
    assert status.value in upload.json()["message"]
    for path in ["/api/v1/rounds/current", "/api/v1/banks/me", "/api/v1/key-epochs/current"]:
        assert client.get(path, **bank_alpha.auth()).status_code == 401
    assert open_round.submissions.count() == 0


@pytest.mark.parametrize("credential", [None, "cbk_nope_nope", "garbage", "cbk_x"])
def test_a_missing_or_invalid_credential_is_refused(
    client, ckks, open_round, bank_alpha, credential
):
    body, _ = encrypted_update(ckks, _length(open_round))
    headers = upload_headers(bank_alpha, open_round.number, body)
    if credential is None:
        headers.pop("HTTP_AUTHORIZATION")
    else:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {credential}"
    response = _put(client, open_round.number, body, headers)
    assert response.status_code in (401, 403)
    assert response.json()["message"]
    assert open_round.submissions.count() == 0


def test_a_bank_without_a_registered_signing_key_is_told_to_register(client, ckks, open_round):
    from tests.conftest import make_bank

    keyless: Persona = make_bank("delta", with_key=False)
    body, _ = encrypted_update(ckks, _length(open_round))
    response = _put(
        client, open_round.number, body, upload_headers(keyless, open_round.number, body)
    )
    assert response.status_code == 400
    assert "register" in response.json()["message"]


def test_rejections_are_recorded_in_the_audit_trail(client, ckks, open_round, bank_alpha):
    from audit.models import AuditEvent

    junk = b"junk" * 100
    _put(client, open_round.number, junk, upload_headers(bank_alpha, open_round.number, junk))
    event = AuditEvent.objects.filter(action="update.rejected").last()
    assert event is not None and event.actor == "bank:alpha"
    assert "CKKSVEC1" in event.data["reason"]


@pytest.mark.parametrize(
    "header, value, message",
    [
        ("HTTP_X_PRIVACY_EPSILON", "lots", "X-Privacy-Epsilon must be a non-negative number"),
        ("HTTP_X_PRIVACY_EPSILON", "-0.5", "X-Privacy-Epsilon must be a non-negative number"),
        ("HTTP_X_PRIVACY_EPSILON", "inf", "X-Privacy-Epsilon must be a non-negative number"),
        ("HTTP_X_PRIVACY_BUDGET_LEFT", "maybe", "X-Privacy-Budget-Left must be true or false"),
    ],
    ids=["word", "negative", "infinite", "not-a-boolean"],
)
def test_a_malformed_privacy_header_is_refused_and_nothing_is_kept(
    client, ckks, open_round, bank_alpha, settings, header, value, message
):
    body, _ = encrypted_update(ckks, _length(open_round))
    headers = {**upload_headers(bank_alpha, open_round.number, body), header: value}
    response = _put(client, open_round.number, body, headers)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert _state(open_round) == (RoundState.OPEN, 0, [])
    tmp = settings.BLOB_DIR / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


def test_the_answer_to_an_upload_names_the_round_bank_digest_and_size(
    client, ckks, open_round, bank_alpha
):
    body, _ = encrypted_update(ckks, _length(open_round), seed=3)
    headers = upload_headers(bank_alpha, open_round.number, body)
    first = _put(client, open_round.number, body, headers).json()
    retry = _put(client, open_round.number, body, headers).json()
    assert first == retry
    assert {k: first[k] for k in ("round", "bank", "digest", "size_bytes")} == {
        "round": open_round.number,
        "bank": "alpha",
        "digest": hashlib.sha256(body).hexdigest(),
        "size_bytes": len(body),
    }
    assert first["received_at"]


def test_under_a_non_dp_policy_a_privacy_claim_is_ignored_not_stored(
    client, ckks, open_round, bank_alpha
):
    body, _ = encrypted_update(ckks, _length(open_round), seed=11)
    # Signed without a claim (v1); a claim added on the way means nothing without DP.
    headers = upload_headers(bank_alpha, open_round.number, body)
    headers.update({"HTTP_X_PRIVACY_EPSILON": "0.5", "HTTP_X_PRIVACY_BUDGET_LEFT": "true"})
    assert _put(client, open_round.number, body, headers).status_code == 201
    sub = Submission.objects.get(round=open_round, bank=bank_alpha.bank)
    assert (sub.epsilon_spent, sub.budget_left) == (None, None)


def test_a_v2_signature_with_an_empty_claim_is_accepted_without_dp(
    client, ckks, open_round, bank_alpha
):
    body, _ = encrypted_update(ckks, _length(open_round), seed=12)
    digest = hashlib.sha256(body).hexdigest()
    headers = upload_headers(bank_alpha, open_round.number, body)
    message = update_message_v2(open_round.number, bank_alpha.slug, digest)
    headers["HTTP_X_UPDATE_SIGNATURE"] = sign(bank_alpha.key, message)
    assert _put(client, open_round.number, body, headers).status_code == 201


# --- the round's own size limit, and the signature before the body -----------------------


class _Unreadable:
    """A body that must not be read: reading it fails the test."""

    reads = 0

    def read(self, size: int = -1, /) -> bytes:
        type(self).reads += 1
        raise AssertionError("the body was read")


def _unread_upload(rnd: Round, persona: Persona, body: bytes, **kwargs: Any) -> Any:
    from consortium.rounds.uploads import Upload

    headers = upload_headers(persona, rnd.number, body)
    _Unreadable.reads = 0
    return Upload(
        digest=headers["HTTP_X_UPDATE_DIGEST"],
        signature=kwargs.pop("signature", headers["HTTP_X_UPDATE_SIGNATURE"]),
        body=_Unreadable(),
        **kwargs,
    )


def test_the_upload_limit_is_the_rounds_expected_ciphertext_size(ckks, open_round, settings):
    from consortium.rounds.uploads import upload_limit

    body, _ = encrypted_update(ckks, _length(open_round))
    limit = upload_limit(open_round)
    # A real update fits, with little room to spare, far below the portal-wide limit.
    assert len(body) <= limit < 2 * len(body) < settings.MAX_UPLOAD_BYTES
    settings.MAX_UPLOAD_BYTES = limit - 1
    assert upload_limit(open_round) == limit - 1  # and never above the portal-wide one


def test_a_declared_size_above_the_rounds_limit_is_a_413_before_the_body_is_read(
    ckks, open_round, bank_alpha
):
    from consortium.api.errors import ApplicationError
    from consortium.rounds.services import submission_create
    from consortium.rounds.uploads import upload_limit

    body, _ = encrypted_update(ckks, _length(open_round))
    limit = upload_limit(open_round)
    upload = _unread_upload(open_round, bank_alpha, body, content_length=limit + 1)
    with pytest.raises(ApplicationError) as refused:
        submission_create(rnd=open_round, bank=bank_alpha.bank, upload=upload)
    assert refused.value.status_code == 413 and refused.value.extra == {"limit": limit}
    assert _Unreadable.reads == 0
    assert refused.value.refusal is not None  # marked for the audit trail


def test_an_oversized_upload_through_the_api_is_refused_and_audited(
    client, ckks, open_round, bank_alpha
):
    from audit.models import AuditEvent
    from consortium.rounds.uploads import upload_limit

    body = b"\0" * (upload_limit(open_round) + 1)
    response = _put(
        client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert response.status_code == 413
    assert response.json()["extra"] == {"limit": upload_limit(open_round)}
    event = AuditEvent.objects.get(action="update.rejected")
    assert "limit" in event.data["reason"] and event.actor == "bank:alpha"


def test_a_bad_signature_over_the_declared_digest_costs_no_body_read(
    ckks, open_round, bank_alpha, bank_beta
):
    from consortium.api.errors import ApplicationError
    from consortium.rounds.services import submission_create

    body, _ = encrypted_update(ckks, _length(open_round))
    forged = upload_headers(bank_alpha, open_round.number, body, signer=bank_beta)
    upload = _unread_upload(
        open_round, bank_alpha, body, signature=forged["HTTP_X_UPDATE_SIGNATURE"]
    )
    with pytest.raises(ApplicationError, match="signature does not verify") as refused:
        submission_create(rnd=open_round, bank=bank_alpha.bank, upload=upload)
    assert refused.value.status_code == 403
    assert _Unreadable.reads == 0
    assert open_round.submissions.count() == 0


def test_a_refused_signature_is_recorded_in_the_audit_trail_once(
    client, ckks, open_round, bank_alpha, bank_beta
):
    from audit.models import AuditEvent

    body, _ = encrypted_update(ckks, _length(open_round))
    forged = upload_headers(bank_alpha, open_round.number, body, signer=bank_beta)
    assert _put(client, open_round.number, body, forged).status_code == 403
    events = AuditEvent.objects.filter(action="update.rejected")
    assert [e.data["reason"] for e in events] == ["bad signature"]


def test_a_v1_upload_beyond_max_banks_per_round_is_refused_with_a_409(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma, settings
):
    settings.MAX_BANKS_PER_ROUND = 2
    number = open_round.number
    bodies = {}
    for persona, seed in [(bank_alpha, 1), (bank_beta, 2)]:
        bodies[persona.slug], _ = encrypted_update(ckks, _length(open_round), seed=seed)
        body = bodies[persona.slug]
        assert _put(client, number, body, upload_headers(persona, number, body)).status_code == 201
    body, _ = encrypted_update(ckks, _length(open_round), seed=3)
    response = _put(client, number, body, upload_headers(bank_gamma, number, body))
    assert response.status_code == 409
    assert "CONSORTIUM_MAX_BANKS_PER_ROUND" in response.json()["message"]
    assert "2 updates" in response.json()["message"]
    assert open_round.submissions.count() == 2
    # A bank already in the sum still gets its answer on a retry.
    again = bodies[bank_alpha.slug]
    retry = _put(client, number, again, upload_headers(bank_alpha, number, again))
    assert retry.status_code == 200, retry.json()
