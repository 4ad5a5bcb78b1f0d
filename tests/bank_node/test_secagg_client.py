"""The client's secure-aggregation calls: the routes and bodies sent, the answers parsed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bank_node.portal_client import PortalError
from protocol import MaskKeysPost, Reveal
from tests.standin_portal import standin_portal

KEYS = {
    "round": 7,
    "threshold": 3,
    "cohort": ["alpha", "beta", "gamma"],
    "keys": [
        {
            "bank": "alpha",
            "mask_public_key": "a2V5",
            "seed_commitment": "cd" * 32,
            "signature": "c2",
        }
    ],
    "shares_for_you": {"beta": "Ym94"},
    "final": True,
}
REQUEST = {"round": 7, "threshold": 3, "survivors": ["alpha", "beta"], "dropped": ["gamma"]}


@pytest.fixture
def portal() -> Iterator[dict[str, Any]]:
    """A stand-in portal: answers ``routes[path]`` = (status, bytes) and records requests."""
    seen: dict[str, Any] = {"routes": {}, "requests": []}

    def answer(
        method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        seen["requests"].append((method, path, body))
        return seen["routes"].get(path, (404, b'{"message": "no"}'))

    with standin_portal(answer) as client:
        seen["client"] = client
        yield seen


def test_cohort_keys_and_the_unmask_request_arrive_as_their_messages(portal):
    portal["routes"]["/api/v1/rounds/7/mask-keys"] = (200, json.dumps(KEYS).encode())
    portal["routes"]["/api/v1/rounds/7/unmask"] = (200, json.dumps(REQUEST).encode())
    keys = portal["client"].cohort_keys(7)
    assert keys.banks == ("alpha",) and keys.final and keys.shares_for_you == {"beta": "Ym94"}
    assert portal["client"].unmask_request(7).dropped == ("gamma",)


@pytest.mark.parametrize(
    ("route", "body", "call", "field"),
    [
        ("mask-keys", {k: v for k, v in KEYS.items() if k != "final"}, "cohort_keys", "final"),
        (
            "mask-keys",
            KEYS | {"keys": [{"bank": "alpha"}]},
            "cohort_keys",
            "keys[0].mask_public_key",
        ),
        ("unmask", REQUEST | {"survivors": "alpha"}, "unmask_request", "survivors"),
    ],
    ids=["missing field", "an incomplete key", "a wrongly typed list"],
)
def test_a_malformed_secagg_answer_is_a_portal_error_naming_the_field(
    portal, route, body, call, field
):
    portal["routes"][f"/api/v1/rounds/7/{route}"] = (200, json.dumps(body).encode())
    with pytest.raises(PortalError, match="malformed answer") as caught:
        getattr(portal["client"], call)(7)
    assert field in caught.value.extra["field"]


def test_the_mask_keys_and_the_reveal_are_sent_as_json_to_their_routes(portal):
    portal["routes"]["/api/v1/rounds/7/mask-keys"] = (200, b"{}")
    portal["routes"]["/api/v1/rounds/7/reveal"] = (201, b"{}")
    post = MaskKeysPost("a2V5", "cd" * 32, "c2ln", {"beta": "Ym94"})
    reveal = Reveal("alpha", ("alpha", "beta"), ("gamma",), {"gamma": "aw=="}, {}, "c2ln")
    portal["client"].mask_keys_put(7, post)
    portal["client"].reveal_post(7, reveal)
    (put, put_path, put_body), (post_, post_path, post_body) = portal["requests"]
    assert (put, put_path) == ("PUT", "/api/v1/rounds/7/mask-keys")
    assert MaskKeysPost.from_dict(json.loads(put_body)) == post
    assert (post_, post_path) == ("POST", "/api/v1/rounds/7/reveal")
    assert Reveal.from_dict(json.loads(post_body)) == reveal


def test_a_refused_reveal_is_a_portal_error_with_the_portals_message(portal):
    portal["routes"]["/api/v1/rounds/7/reveal"] = (409, b'{"message": "already revealed"}')
    reveal = Reveal("alpha", ("alpha",), (), {}, {}, "c2ln")
    with pytest.raises(PortalError, match="already revealed") as caught:
        portal["client"].reveal_post(7, reveal)
    assert caught.value.status == 409


def test_a_submission_is_streamed_to_a_file_and_its_digest_returned(portal, tmp_path: Path):
    blob = b"CKKSVEC2" + bytes(range(256)) * 40
    portal["routes"]["/api/v1/rounds/7/submissions/beta"] = (200, blob)
    dest = tmp_path / "beta.ckks2"
    assert portal["client"].download_submission(7, "beta", dest) == hashlib.sha256(blob).hexdigest()
    assert dest.read_bytes() == blob
    with pytest.raises(PortalError) as caught:
        portal["client"].download_submission(7, "gamma", tmp_path / "gamma.ckks2")
    assert caught.value.status == 404 and not (tmp_path / "gamma.ckks2").exists()
