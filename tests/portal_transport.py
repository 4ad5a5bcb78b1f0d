"""A ``requests`` transport into Django's test client: a node's real HTTP client, in-process.

Every request goes through the portal's URLs, authentication, views and services in the
test's database transaction (a live server would need a transactional database, which the
append-only audit tables forbid to flush on SQLite). ``AnswersLost`` injects a fault on that
path: the portal does the work and the answer is lost.
"""

from __future__ import annotations

from typing import Any

from django.test import Client
from requests import PreparedRequest, ReadTimeout, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


class DjangoTransport(BaseAdapter):
    """Hands a ``requests`` request to Django's test client and back."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        meta: dict[str, Any] = {
            "HTTP_" + name.upper().replace("-", "_"): value
            for name, value in request.headers.items()
            if name.lower() not in {"content-type", "content-length"}
        }
        body: Any = request.body
        if hasattr(body, "read"):  # an upload streamed from its file: the test client wants bytes
            body = body.read()
        answer = self.client.generic(
            request.method or "GET",
            request.path_url,
            data=body or b"",
            content_type=str(request.headers.get("Content-Type", "")),
            **meta,
        )
        response = Response()
        response.status_code = answer.status_code
        # A download (FileResponse) streams; the node reads it with iter_content either way.
        if getattr(answer, "streaming", False):
            # getattr: the test response type mypy knows has no streaming_content
            response._content = b"".join(getattr(answer, "streaming_content"))
        else:
            response._content = answer.content
        response._content_consumed = True  # iter_content serves _content, never a raw stream
        response.headers = CaseInsensitiveDict(dict(answer.items()))
        response.request, response.url = request, request.url or ""
        return response

    def close(self) -> None:
        pass


class AnswersLost(DjangoTransport):
    """A fault: the portal handles the first ``lose`` requests of ``method`` in full, then the
    node's read times out, as when a slow answer outlives ``request_timeout_seconds``.

    Every request that reached the portal is kept in ``sent``, headers and all.
    """

    def __init__(self, client: Client, *, method: str = "POST", lose: int = 1) -> None:
        super().__init__(client)
        self.method, self.lose = method, lose
        self.sent: list[PreparedRequest] = []

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.sent.append(request)
        response = super().send(request, *args, **kwargs)
        if request.method == self.method and self.lose > 0:
            self.lose -= 1
            raise ReadTimeout(f"read timed out (fault injected after {response.status_code})")
        return response
