"""Log records in either format never carry an API token (issue 18), wherever in the record it got to:
the message, an argument, a field, a traceback."""

from __future__ import annotations

import json
import logging
import sys

from cfl_graph.observability import CURRENT, JsonLines, PlainLines, RequestFacts, RequestIdFilter

TOKEN = "cflg_abcdefgh2345_" + ("s3cr3tPart" * 5)[:43]  # the shape `cfl-graph token create` prints


def _record() -> logging.LogRecord:
    try:
        raise RuntimeError(f"the upstream refused {TOKEN}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "cfl_graph.test", logging.ERROR, __file__, 1, "token %s seen", (TOKEN,), exc_info
    )
    record.party = f"Party {TOKEN}"
    RequestIdFilter().filter(record)
    return record


def test_plain_lines_redact_tokens_everywhere() -> None:
    line = PlainLines().format(_record())
    assert TOKEN not in line and "s3cr3tPart" not in line
    assert "cflg_abcdefgh2345_[redacted]" in line and "Traceback" in line


def test_json_lines_redact_tokens_everywhere_and_carry_the_request_id() -> None:
    reset = CURRENT.set(RequestFacts("req-1"))
    try:
        record = _record()
    finally:
        CURRENT.reset(reset)
    written = JsonLines().format(record)
    assert TOKEN not in written and "s3cr3tPart" not in written
    fields = json.loads(written)
    assert fields["request_id"] == "req-1"
    assert fields["level"] == "ERROR" and fields["logger"] == "cfl_graph.test"
    assert fields["message"] == "token cflg_abcdefgh2345_[redacted] seen"
    assert fields["party"] == "Party cflg_abcdefgh2345_[redacted]"
    assert "RuntimeError" in fields["exc_info"]
