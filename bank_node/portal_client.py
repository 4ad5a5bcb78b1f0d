"""The only module of the node that speaks HTTP: a small client for the portal's REST API.

Retries with exponential backoff on connection errors, 429 and 5xx (the portal answers 503
while its database is away); 4xx answers are final and carry the portal's message. A POST
carries one random ``Idempotency-Key`` on all its attempts, so a retry after a timeout
gets the first attempt's answer instead of creating twice (``consortium/api/idempotency.py``). Every
answer the node acts on is parsed into its ``protocol`` dataclass; one that does not have
its declared shape raises ``PortalError`` naming the field, never a ``KeyError``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

from bank_node import metrics as node_metrics
from protocol import (
    BankInfo,
    CohortKeys,
    KeyEpochInfo,
    MaskKeysPost,
    MetricsReceipt,
    PolicySnapshot,
    PrivacyClaim,
    ProtocolError,
    Reveal,
    RoundInfo,
    RoundPage,
    UnmaskRequest,
    UpdateReceipt,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}
IDEMPOTENCY_HEADER = "Idempotency-Key"

M = TypeVar("M")


class PortalError(Exception):
    """The portal refused a request (4xx) or stayed unreachable after all retries."""

    def __init__(self, status: int | None, message: str, extra: dict[str, Any] | None = None):
        super().__init__(f"{status or 'unreachable'}: {message}")
        self.status = status
        self.message = message
        self.extra = extra or {}


class PortalMalformed(PortalError):
    """The portal answered, but not with the message it must send (bad JSON, wrong shape).

    Unlike an unreachable portal this is the portal's fault, not the network's: the agent
    refuses it (``portal_malformed``) and objects.
    """


class _Base:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 8,
        client_cert: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        # trust_env stays on: HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE apply (the chart
        # sets them for a bank's egress proxy and private CA).
        self.session = requests.Session()
        if client_cert is not None:  # (certificate, key) for mutual TLS
            self.session.cert = client_cert
        self.retries_made = 0

    def _request(
        self, method: str, path: str, *, body_file: Path | None = None, **kwargs: Any
    ) -> requests.Response:
        url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        if method == "POST":  # the one method the API does not make idempotent by itself
            kwargs["headers"] = {IDEMPOTENCY_HEADER: str(uuid.uuid4()), **kwargs.get("headers", {})}
        delay = 0.5
        for attempt in range(self.max_retries + 1):
            try:
                if body_file is not None:
                    # Re-open on every attempt: requests streams the file, it never sits in RAM.
                    with open(body_file, "rb") as body:
                        response = self.session.request(
                            method, url, data=body, timeout=self.timeout, **kwargs
                        )
                else:
                    response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                failure: str = f"{exc.__class__.__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return _checked(response)
                failure = f"HTTP {response.status_code}: {_message(response)}"
            if attempt == self.max_retries:
                raise PortalError(
                    None, f"{method} {url} failed after {attempt + 1} attempts: {failure}"
                )
            self.retries_made += 1
            node_metrics.PORTAL_RETRIES.inc()
            log.warning("%s %s: %s; retrying in %.1fs", method, path, failure, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            raise PortalMalformed(
                response.status_code, f"{method} {path}: the answer is not JSON: {exc}"
            ) from exc

    def _parsed(self, parse: Callable[[object], M], method: str, path: str, **kwargs: Any) -> M:
        """The answer as its declared message; a malformed one is a ``PortalError``."""
        return _parse(parse, self._json(method, path, **kwargs), f"{method} {path}")

    def _rounds(self, limit: int) -> list[RoundInfo]:
        page = self._parsed(RoundPage.from_dict, "GET", f"rounds/?limit={limit}")
        return list(page.results)


def _parse(parse: Callable[[object], M], data: object, what: str) -> M:
    try:
        return parse(data)
    except ProtocolError as exc:
        raise PortalMalformed(
            None, f"{what}: malformed answer from the portal: {exc}", {"field": exc.field}
        ) from exc


def _stream_to(response: requests.Response, path: Path) -> str:
    """Write a streamed body to ``path`` piece by piece; its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for piece in response.iter_content(1024 * 1024):
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def _error_body(response: requests.Response, size: int) -> dict[str, Any]:
    """The API's error shape ``{"message", "extra"}``, or the start of whatever came instead."""
    try:
        payload = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested past Python's recursion limit
        payload = None
    if not isinstance(payload, dict):
        return {"message": response.text[:size]}
    extra = payload.get("extra")
    body = {k: payload[k] for k in ("message",) if k in payload}
    return body | {"extra": extra if isinstance(extra, dict) else None}


def _message(response: requests.Response) -> str:
    body = _error_body(response, 200)
    return str(body["message"] if "message" in body else response.text[:200])


def _checked(response: requests.Response) -> requests.Response:
    if response.status_code >= 400:
        payload = _error_body(response, 300)
        message = str(payload.get("message"))
        raise PortalError(response.status_code, message, payload.get("extra"))
    return response


class BankClient(_Base):
    """What a bank node does on the portal, authenticated by its API credential."""

    def __init__(self, base_url: str, credential: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.session.headers["Authorization"] = f"Bearer {credential}"

    def me(self) -> BankInfo:
        return self._parsed(BankInfo.from_dict, "GET", "banks/me")

    def register_signing_key(self, public_key_b64: str) -> BankInfo:
        body = {"public_key": public_key_b64}
        return self._parsed(BankInfo.from_dict, "PUT", "banks/me/signing-key", json=body)

    def key_epoch(self) -> KeyEpochInfo:
        return self._parsed(KeyEpochInfo.from_dict, "GET", "key-epochs/current")

    def policy_version(self, name: str, version: int) -> PolicySnapshot:
        """One policy version's snapshot, whether or not a round has run under it."""
        return self._parsed(PolicySnapshot.from_dict, "GET", f"policies/{name}/versions/{version}")

    def current_round(self) -> RoundInfo | None:
        """The round in flight, or None when there is none (the portal answers 204)."""
        data = self._json("GET", "rounds/current")
        return None if data is None else _parse(RoundInfo.from_dict, data, "GET rounds/current")

    def round(self, number: int) -> RoundInfo:
        return self._parsed(RoundInfo.from_dict, "GET", f"rounds/{number}")

    def rounds(self, limit: int = 20) -> list[RoundInfo]:
        return self._rounds(limit)

    def download_aggregate(self, number: int, dest: Path) -> str:
        """Stream round ``number``'s aggregate to ``dest``; verify and return its digest."""
        response = self._request("GET", f"rounds/{number}/aggregate", stream=True)
        tmp = dest.with_suffix(".part")
        digest = _stream_to(response, tmp)
        expected = response.headers.get("X-Aggregate-Digest", "")
        if digest != expected:
            tmp.unlink(missing_ok=True)
            raise PortalError(
                None,
                f"aggregate of round {number} arrived corrupted "
                f"(digest {digest[:16]} != {expected[:16]})",
            )
        tmp.replace(dest)
        return expected

    def download_submission(self, number: int, bank: str, dest: Path) -> str:
        """Stream one survivor's masked upload of a published v2 round; return its SHA-256.

        The caller compares the digest with the manifest's input, which the bank signed.
        """
        response = self._request("GET", f"rounds/{number}/submissions/{bank}", stream=True)
        tmp = dest.with_suffix(".part")
        digest = _stream_to(response, tmp)
        tmp.replace(dest)
        return digest

    # --- secure aggregation v2 (docs/secure-aggregation.md, "The round protocol") -----------

    def mask_keys_put(self, number: int, post: MaskKeysPost) -> Any:
        """Advertise this round's mask key and relay the share boxes (phase *sharing*)."""
        return self._json("PUT", f"rounds/{number}/mask-keys", json=post.to_dict())

    def cohort_keys(self, number: int) -> CohortKeys:
        """The advertised mask keys and the share boxes sealed to this bank."""
        return self._parsed(CohortKeys.from_dict, "GET", f"rounds/{number}/mask-keys")

    def unmask_request(self, number: int) -> UnmaskRequest:
        """Who survived and who dropped (phase *unmasking*)."""
        return self._parsed(UnmaskRequest.from_dict, "GET", f"rounds/{number}/unmask")

    def reveal_post(self, number: int, reveal: Reveal) -> Any:
        """Send this survivor's signed reveal."""
        return self._json("POST", f"rounds/{number}/reveal", json=reveal.to_dict())

    def upload_update(
        self,
        number: int,
        path: Path,
        digest: str,
        signature: str,
        *,
        privacy: PrivacyClaim | None = None,
    ) -> UpdateReceipt:
        """PUT the encrypted update; a retry of the same digest is answered idempotently.

        ``privacy`` (cumulative epsilon, budget left) is reported under a DP policy.
        """
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Update-Digest": digest,
            "X-Update-Signature": signature,
        }
        if privacy is not None:
            headers.update(privacy.headers())
        return self._parsed(
            UpdateReceipt.from_dict,
            "PUT",
            f"rounds/{number}/update",
            body_file=path,
            headers=headers,
        )

    def roster(self, after: int | None = None) -> dict[str, Any]:
        """``GET /roster``: versions in force (as signed) and pending ones, as the portal says.

        Nothing here is trusted: ``bank_node.roster`` verifies every version itself.
        """
        query = "" if after is None else f"?after={int(after)}"
        data = self._json("GET", f"roster{query}")
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise PortalMalformed(None, "GET roster: malformed answer from the portal")
        if not isinstance(data.get("pending", []), list):
            raise PortalMalformed(None, "GET roster: malformed answer from the portal (pending)")
        return data

    def sign_roster_version(self, number: int, signature: str) -> dict[str, Any]:
        """Send this bank's signature (approval) of roster version ``number``."""
        body = {"signature": signature}
        return self._json("POST", f"roster/versions/{int(number)}/signatures", json=body)

    def dispute(self, number: int) -> dict[str, Any]:
        """``GET /disputes/{n}``: who objected to round ``number`` and who signed its clearance.

        Only shown to the bank before it signs; the portal derives it from signatures.
        """
        data = self._json("GET", f"disputes/{int(number)}")
        if not isinstance(data, dict):
            raise PortalMalformed(None, f"GET disputes/{number}: malformed answer from the portal")
        return data

    def clear_dispute(self, number: int, signature: str) -> dict[str, Any]:
        """Send this bank's signature clearing the dispute of round ``number``."""
        body = {"signature": signature}
        return self._json("POST", f"disputes/{int(number)}/clearances", json=body)

    def send_objection(self, objection: dict[str, Any], signature: str) -> dict[str, Any]:
        """Record a signed objection (a refusal, and why) in the portal's audit trail."""
        body = {"objection": objection, "signature": signature}
        return self._json("POST", "objections", json=body)

    def send_verdict(self, number: int, verdict: dict[str, Any], signature: str) -> Any:
        """Post this bank's signed gate verdict on evaluation round ``number``.

        201 stores it, 200 answers the same verdict sent again (docs/robustness.md).
        """
        body = {"verdict": verdict, "signature": signature}
        return self._json("POST", f"rounds/{int(number)}/verdicts", json=body)

    def report_metrics(
        self, number: int, metrics: dict[str, float | None], model_digest: str = ""
    ) -> MetricsReceipt:
        """Figures the bank chose to share, and (when given) its produced model's digest."""
        body: dict[str, Any] = {"metrics": metrics}
        if model_digest:
            body["model_digest"] = model_digest
        return self._parsed(MetricsReceipt.from_dict, "POST", f"rounds/{number}/metrics", json=body)

    def report_served_model(self, number: int, version: str) -> dict[str, Any]:
        """Tell the portal this bank serves round ``number``'s model as ``version`` (opt-in)."""
        body = {"version": version}
        return self._json("PUT", f"rounds/{int(number)}/served-model", json=body)


class OperatorClient(_Base):
    """Operator calls (HTTP basic auth over TLS in production), used by the demo and scripts."""

    def __init__(self, base_url: str, username: str, password: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.session.auth = (username, password)

    def bank_create(self, slug: str, name: str = "") -> dict[str, Any]:
        return self._json("POST", "banks/", json={"slug": slug, "name": name or slug})

    def bank_action(self, slug: str, action: str) -> dict[str, Any]:
        return self._json("POST", f"banks/{slug}/{action}", json={})

    def key_epoch_register(
        self, public_context_b64: str, ckks_params: dict[str, Any]
    ) -> KeyEpochInfo:
        body = {"public_context_b64": public_context_b64, "ckks_params": ckks_params}
        return self._parsed(KeyEpochInfo.from_dict, "POST", "key-epochs/", json=body)

    def policy_create(self, **fields: Any) -> dict[str, Any]:
        return self._json("POST", "policies/", json=fields)

    def policy_activate(self, pk: int) -> dict[str, Any]:
        return self._json("POST", f"policies/{pk}/activate", json={})

    def roster(self) -> dict[str, Any]:
        return dict(self._json("GET", "roster"))

    def roster_propose(
        self, *, genesis: dict[str, Any] | None = None, change: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Propose the genesis (a whole version) or a change; the banks then sign it."""
        body: dict[str, Any] = {"genesis": genesis} if genesis is not None else {"change": change}
        return dict(self._json("POST", "roster/proposals", json=body))

    def rounds(self, limit: int = 100) -> list[RoundInfo]:
        return self._rounds(limit)
