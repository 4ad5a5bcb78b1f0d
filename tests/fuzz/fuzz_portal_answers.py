"""atheris harness for the node's parsing of every portal answer (issue 13, item 1).

    .venv/bin/python tests/fuzz/fuzz_portal_answers.py [libFuzzer flags] CORPUS

Each input is one HTTP answer: its first byte picks the call (`BankClient` method), its
second the status, the rest is the body. The answer goes through the client's real parse
path (JSON, `protocol` dataclasses: `RoundInfo` with its manifest and `SecAggRecord`,
`RoundPage`, `CohortKeys`, `UnmaskRequest`, roster versions, disputes), then what the node
checks first (`check_manifest`, `check_dependencies`). A crash is any exception but
`PortalError` (the client's refusal), `Refused` (the node's) or `RosterError` (a roster
version that does not parse).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

with atheris.instrument_imports(include=["bank_node", "protocol", "governance"]):
    from bank_node.checks import Refused, check_dependencies, check_manifest
    from bank_node.config import Guardrails
    from bank_node.portal_client import BankClient, PortalError
    from bank_node.roster import parse_relayed
    from governance import RosterError
    from protocol import RoundInfo

# Answers that parsed and passed the first checks (read by the replay test, not by atheris).
PARSED = [0]
STATUSES = (200, 200, 200, 204, 400, 404, 409, 503)


class Response:
    """Just what ``BankClient`` reads of a ``requests.Response``."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.content = status, body
        self.headers: dict[str, str] = {}
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def iter_content(self, size: int) -> Iterator[bytes]:
        yield self.content


class Session:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.answer = Response(200, b"")

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        return self.answer


CLIENT = BankClient("http://portal.fuzz", "credential", max_retries=0)
SESSION = Session()
CLIENT.session = SESSION  # type: ignore[assignment]  # answers come from the fuzzer


def _round_checks(rnd: RoundInfo | None) -> bool:
    """What the node checks of a round before anything else (no roster pinned)."""
    if rnd is None:
        return False
    check_dependencies(rnd, {}, [rnd])
    if rnd.manifest is not None:
        check_manifest(None, rnd, rnd.manifest, Guardrails())
    return True


def _roster() -> None:
    data = CLIENT.roster(after=1)
    for raw in [*data["versions"], *data.get("pending", [])]:
        try:
            parse_relayed(raw)
        except RosterError:
            continue


CALLS: tuple[Callable[[], object], ...] = (
    lambda: _round_checks(CLIENT.current_round()),
    lambda: _round_checks(CLIENT.round(7)),
    lambda: [_round_checks(r) for r in CLIENT.rounds(limit=5)],
    lambda: CLIENT.cohort_keys(7),
    lambda: CLIENT.unmask_request(7),
    _roster,
    lambda: CLIENT.dispute(7),
    CLIENT.me,
    CLIENT.key_epoch,
)


def one(data: bytes) -> None:
    if len(data) < 2:
        return
    call = CALLS[data[0] % len(CALLS)]
    SESSION.answer = Response(STATUSES[data[1] % len(STATUSES)], data[2:])
    try:
        call()
        PARSED[0] += 1
    except PortalError as exc:
        assert exc.message is not None
    except (Refused, RosterError) as exc:
        assert str(exc)


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
