"""Request size limits hold everywhere: JSON endpoints and the streamed upload."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client

from consortium.rounds.models import MetricReport, RoundState
from tests.conftest import encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


def _basic() -> dict[str, Any]:
    token = base64.b64encode(b"olivia:operator-password-1").decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def _big_json(settings: Any) -> str:
    return json.dumps(
        {"metrics": {"auprc": 0.5}, "pad": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
    )


def test_an_oversized_json_body_from_a_bank_is_a_413_in_the_error_shape(
    client: Client, settings, open_round, bank_alpha
):
    type(open_round).objects.filter(pk=open_round.pk).update(state=RoundState.PUBLISHED)
    response = client.post(
        f"/api/v1/rounds/{open_round.number}/metrics",
        data=_big_json(settings),
        content_type="application/json",
        **bank_alpha.auth(),
    )
    assert response.status_code == 413
    assert response.json() == {
        "message": f"request body larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE}-byte "
        "limit",
        "extra": {"limit": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
    }
    assert not MetricReport.objects.filter(round=open_round).exists()


def test_an_oversized_json_body_from_an_operator_is_a_413(client: Client, settings, operator):
    response = client.post(
        "/api/v1/policies/", data=_big_json(settings), content_type="application/json", **_basic()
    )
    assert response.status_code == 413


def test_an_upload_declaring_more_than_the_limit_is_refused_before_anything_is_written(
    client: Client, settings, ckks, open_round, bank_alpha
):
    body, _ = encrypted_update(ckks, open_round.vector_length)
    settings.MAX_UPLOAD_BYTES = len(body) - 1
    response = client.put(
        f"/api/v1/rounds/{open_round.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(bank_alpha, open_round.number, body),
    )
    assert response.status_code == 413
    assert response.json()["extra"] == {"limit": len(body) - 1}
    tmp = settings.BLOB_DIR / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())
    assert not (settings.BLOB_DIR / "uploads").exists()


@pytest.mark.parametrize(
    "model_spec, message",
    [
        (None, "model_spec"),
        ([8, 8], "model_spec must be an object"),
        ({"kind": "mlp", "hidden": [True]}, "positive layer widths"),
        ({"kind": "mlp", "hidden": "wide"}, "positive layer widths"),
        ({"kind": "mlp", "hidden": [-1]}, "positive layer widths"),
        # Would need terabytes to build: refused from its shape alone.
        ({"kind": "mlp", "hidden": [10**6, 10**6]}, "does not fit the"),
    ],
    ids=["null", "list", "bool-width", "string", "negative", "huge"],
)
def test_a_hostile_model_spec_is_a_400_with_a_reason(client: Client, operator, model_spec, message):
    response = client.post(
        "/api/v1/policies/",
        {"name": "hostile", "model_spec": model_spec},
        content_type="application/json",
        **_basic(),
    )
    assert response.status_code == 400, response.content
    assert message in response.json()["message"]
