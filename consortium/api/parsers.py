"""Bounded JSON: a nesting-depth and element-count limit on every JSON body the portal reads.

Python's json module recurses once per nesting level, so 10,000 ``[`` raise a
``RecursionError`` (a 500) instead of a ``JSONDecodeError``. We scan the text once,
without recursion, before handing it to ``json.loads``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import exceptions, parsers, status

# Far deeper than any payload we accept (a policy's model_spec is three levels deep).
MAX_JSON_DEPTH = 32
# Arrays/objects plus separators; 1 MB of "[0," is about 350,000, far above any real body.
MAX_JSON_ELEMENTS = 100_000
# A string (skipped whole), or one structural character that opens, closes or separates.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')


# DRF exceptions, not consortium.api.errors.ApplicationError: DRF imports this module while
# errors.py is still importing DRF. The API's exception handler renders both in one shape.
class JSONTooComplex(exceptions.ParseError):
    """A JSON body nested deeper, or with more elements, than the portal accepts."""


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


def json_shape_check(
    text: str, *, max_depth: int = MAX_JSON_DEPTH, max_elements: int = MAX_JSON_ELEMENTS
) -> None:
    """Raise :class:`JSONTooComplex` if ``text`` nests or counts past the limits."""
    depth = elements = 0
    for match in _TOKEN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONTooComplex(f"JSON nested more than {max_depth} levels deep")
        elif char in "]}":
            depth -= 1
        elif char == ",":
            elements += 1
            if elements > max_elements:
                raise JSONTooComplex(f"JSON with more than {max_elements} elements")


def bounded_json_loads(text: str | bytes) -> Any:
    """``json.loads`` after :func:`json_shape_check`; every bad input is a ``ParseError``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"JSON must be UTF-8: {exc}") from exc
    json_shape_check(text)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise exceptions.ParseError(f"JSON parse error - {exc}") from exc


class BoundedJSONParser(parsers.JSONParser):
    """DRF's JSON parser with the nesting and element bounds; the API's default parser."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        # DATA_UPLOAD_MAX_MEMORY_SIZE has been checked against Content-Length already; the
        # read is bounded again here so a body without one cannot grow past it either.
        raw = stream.read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) if stream else b""
        if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            raise BodyTooLarge(f"request body larger than the {limit}-byte limit")
        return bounded_json_loads(raw)
