"""The load generator's script and its report: what bench.peer's figures and failure checks rest on.

The outputs below were captured from Debian's wrk 4.1.0 running `lua_script` against PostGraphile: one
run with every answer as expected, one where every answer was a 400 of another length.
"""

from __future__ import annotations

import pytest

from bench.peer import PEER_QUERY
from bench.wrk import WrkResult, lua_script, lua_string

CAPTURED_GOOD = """\
Running 2s test @ http://127.0.0.1:5996
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   126.13ms   77.93ms 436.02ms   83.33%
    Req/Sec    35.67     17.05    80.00     83.33%
  67 requests in 2.06s, 10.78MB read
Requests/sec:     32.57
Transfer/sec:      5.24MB
WRK-RESULT {"duration_us": 2057068, "requests": 67, "bytes": 11304240, "unexpected": 0, "unexpected_status": 0, "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, "latency_us": {"min": 27742, "mean": 126133.1, "max": 436018, "p50": 110587, "p90": 204187, "p99": 436018}}
"""

CAPTURED_BAD = """\
Running 1s test @ http://127.0.0.1:5996
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.34ms    2.65ms  21.71ms   87.73%
    Req/Sec     1.36k   239.85     1.63k    60.00%
  1362 requests in 1.01s, 494.79KB read
  Non-2xx or 3xx responses: 1362
Requests/sec:   1353.25
Transfer/sec:    491.61KB
WRK-RESULT {"duration_us": 1006464, "requests": 1362, "bytes": 506664, "unexpected": 1362, "unexpected_status": 400, "errors": {"connect": 0, "read": 0, "write": 0, "status": 1362, "timeout": 0}, "latency_us": {"min": 468, "mean": 3342.8, "max": 21714, "p50": 2338, "p90": 6444, "p99": 15139}}

"""

# What wrk prints when the script does not load: its own report of plain GETs, no line of ours.
CAPTURED_NO_SCRIPT = """\
Running 2s test @ http://127.0.0.1:5999
  1 threads and 5 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.48ms    5.79ms  61.50ms   96.78%
    Req/Sec    10.10k     3.67k   14.84k    52.38%
  21059 requests in 2.10s, 4.86MB read
  Non-2xx or 3xx responses: 21059
Requests/sec:  10028.79
Transfer/sec:      2.31MB
"""


def test_a_run_is_read_from_the_scripts_line_not_from_wrks_own_report() -> None:
    result = WrkResult.parse(CAPTURED_GOOD, connections=4, client_cpu_s=0.5)
    assert result.requests == 67
    assert result.seconds == pytest.approx(2.057068)
    assert result.requests_per_s == pytest.approx(67 / 2.057068)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (110.587, 204.187, 436.018)
    assert result.bytes == 11_304_240
    assert result.failed == 0
    assert result.client_cpu_s == 0.5


def test_answers_of_another_status_or_length_count_as_failed() -> None:
    result = WrkResult.parse(CAPTURED_BAD, connections=4)
    assert result.requests == 1362
    assert result.unexpected == 1362
    assert result.unexpected_status == 400
    assert result.failed == 1362


def test_output_without_the_scripts_line_is_refused() -> None:
    with pytest.raises(ValueError, match="WRK-RESULT"):
        WrkResult.parse(CAPTURED_NO_SCRIPT, connections=5)


@pytest.mark.parametrize("text", ["plain", "a ]] b", "a ]] b ]=] c ]==]", "ends with ]", "[[nested]]"])
def test_a_lua_long_string_holds_any_text_verbatim(text: str) -> None:
    literal = lua_string(text)
    level = literal.index("[", 1)  # the opening bracket is `[`, then `level` equals signs, then `[`
    closing = "]" + "=" * (level - 1) + "]"
    assert literal.startswith("[" + "=" * (level - 1) + "[\n")
    assert literal.endswith(closing)
    body = literal[level + 2 : -len(closing)]
    assert body == text
    assert closing not in text


def test_the_script_carries_the_body_and_headers_verbatim() -> None:
    body = '{"query": "' + PEER_QUERY + '", "variables": {"after": null}}'
    script = lua_script("/graphql", {"Authorization": "Bearer t0ken"}, body, 1234)
    assert "wrk.body = [[\n" + body + "]]" in script
    assert "wrk.headers[ [[\nAuthorization]] ] = [[\nBearer t0ken]]" in script
    assert "local expected_length = 1234" in script
