"""A generated corpus of hostile GraphQL requests (issue 9): each must get a clear error, never a 5xx,
never data it should not, and never a change of state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MODEL = "deviceModels(first: 2) { edges { node { modelId certifiedFirmware { firmwareVersion } } } }"


@dataclass(frozen=True)
class GraphQLCase:
    name: str
    body: Any  # what is POSTed as JSON (not always an object: hostile clients send anything)
    codes: frozenset[str] = field(default_factory=frozenset)  # acceptable error codes; empty: any error
    raw: bytes | None = None  # sent as the body instead of JSON


def _nested(depth: int) -> str:
    inner = "firmwareVersion"
    for _ in range(depth):
        inner = f"certifiedFirmware {{ {inner} }}"
    return f"{{ deviceModels(first: 1) {{ edges {{ node {{ {inner} }} }} }} }}"


def graphql_cases() -> Iterator[GraphQLCase]:
    for depth in (12, 20, 50):
        yield GraphQLCase(f"depth {depth}", {"query": _nested(depth)}, frozenset({"QUERY_TOO_DEEP"}))
    # Deeper still, graphql-core's parser gives up first ("nested too deeply"): a syntax error.
    yield GraphQLCase("depth 200", {"query": _nested(200)})
    for count in (31, 100, 1000):
        aliases = " ".join(f"a{i}: cplSnapshot {{ snapshotId }}" for i in range(count))
        yield GraphQLCase(
            f"{count} aliases",
            {"query": f"{{ {aliases} }}"},
            frozenset({"TOO_MANY_ALIASES", "TOO_MANY_TOKENS"}),
        )
    for first in (501, 1_000_000, -1, 2**31 - 1):
        yield GraphQLCase(
            f"first: {first}",
            {"query": f"{{ deviceModels(first: {first}) {{ totalCount }} }}"},
            frozenset({"PAGE_TOO_LARGE"}),
        )
        yield GraphQLCase(
            f"first: {first} as a variable",
            {
                "query": "query($n: Int!) { coverageGaps(first: $n) { totalCount } }",
                "variables": {"n": first},
            },
            frozenset({"PAGE_TOO_LARGE"}),
        )
    heavy = (
        "edges { node { certifiedFirmware { firmwareVersion imageHash commercial "
        "libraryImage { imageId fileSha256 size state } } } }"
    )
    pages = " ".join(f"p{i}: deviceModels(first: 500) {{ {heavy} }}" for i in range(15))
    yield GraphQLCase(
        "15 pages of 500 with nested lists", {"query": f"{{ {pages} }}"}, frozenset({"QUERY_TOO_COSTLY"})
    )
    yield GraphQLCase(
        "fragment cycle", {"query": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"}
    )
    yield GraphQLCase(
        "self-spreading fragment",
        {"query": "{ ...A } fragment A on Query { cplSnapshot { snapshotId } ...A }"},
    )
    bomb = "fragment F0 on Query { cplSnapshot { snapshotId } }" + "".join(
        f" fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 30)
    )
    yield GraphQLCase("fragment bomb", {"query": "{ ...F29 }" + bomb})
    roots = " ".join(f"r{i}: cplSnapshot {{ snapshotId }}" for i in range(25))
    yield GraphQLCase(
        "25 root fields", {"query": f"{{ {roots} }}"}, frozenset({"TOO_MANY_ROOT_FIELDS", "TOO_MANY_ALIASES"})
    )
    yield GraphQLCase("5 MB query", {"query": "{ " + "cplSnapshot { snapshotId } " * 200_000 + "}"})
    yield GraphQLCase(
        "6,000 comment lines",
        {"query": "#x\n" * 6_000 + "{ cplSnapshot { snapshotId } }"},
        frozenset({"TOO_MANY_TOKENS"}),
    )
    for text in (
        "{",
        "}",
        "{ cplSnapshot { snapshotId }",
        "{ deviceModels(first: ) }",
        "mutation",
        "\x00",
        "{ 🙂 }",
    ):
        yield GraphQLCase(f"syntax: {text[:20]!r}", {"query": text})
    for name, query in {
        "unknown field": "{ secrets }",
        "unknown argument": "{ cplSnapshot(drop: true) { snapshotId } }",
        "scalar with selection": "{ cplSnapshot { snapshotId { x } } }",
        "object without selection": "{ cplSnapshot }",
        "wrong argument type": '{ deviceModels(first: "ten") { totalCount } }',
        "enum not in schema": "{ coverageSummary(groupBy: EVERYTHING) { key } }",
        "unknown fragment": "{ ...Nothing }",
        "unknown directive": "{ cplSnapshot @evil { snapshotId } }",
        "subscription": "subscription { cplSnapshot { snapshotId } }",
        "two anonymous operations": "{ cplSnapshot { snapshotId } } { cplSnapshot { snapshotId } }",
        "undefined variable": "{ deviceModels(first: $n) { totalCount } }",
        "variable never used": "query($n: Int) { cplSnapshot { snapshotId } }",
        "duplicate variable": "query($n: Int, $n: Int) { cplSnapshot { snapshotId } }",
        "mutation of another manufacturer": 'mutation { declareCommercial(manufacturerId: "2C4F", modelId: "0007", hardwareVersion: "0001", firmwareVersion: "03000000", reason: "not ours to declare") { reason } }',
        "mutation with a malformed id": 'mutation { publishImage(id: "../../etc/passwd") { state } }',
        "mutation with a huge id": 'mutation { publishImage(id: "' + "9" * 5000 + '") { state } }',
        "consistency of a malformed id": '{ consistencyReport(manufacturerId: "<script>") { manufacturerId } }',
        "node of a forged id": '{ node(id: "RGV2aWNlTW9kZWw6Li4vLi4=") { id } }',
        "node of garbage": '{ node(id: "%%%") { id } }',
        "cursor of garbage": '{ deviceModels(first: 1, after: "AAAA") { totalCount } }',
        "cursor of another list": '{ coverageGaps(first: 1, after: "WyJEZXZpY2VNb2RlbCIsICIxMEIyIiwgIjAwMDEiLCAiMDEwMCJd") { totalCount } }',
        "filter of garbage": '{ deviceModels(first: 1, filter: {manufacturerId: "ZZZZZ"}) { totalCount } }',
        "search too long": '{ deviceModels(first: 1, filter: {search: "' + "x" * 500 + '"}) { totalCount } }',
        "timeliness with a bad date": '{ timeliness(groupBy: MANUFACTURER, since: "yesterday") { key } }',
        "diff against a missing snapshot": "{ cplSnapshot { diff(against: 999999) { addedCount } } }",
        "diff with a huge limit": "{ cplSnapshot { diff(against: 1, limit: 100000) { addedCount } } }",
        "introspection depth": "{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }",
    }.items():
        yield GraphQLCase(name, {"query": query})
    for name, body in {
        "query is a number": {"query": 42},
        "query is a list": {"query": ["{ cplSnapshot { snapshotId } }"]},
        "query missing": {"variables": {}},
        "variables are a string": {
            "query": "query($n: Int!) { coverageGaps(first: $n) { totalCount } }",
            "variables": "n=5",
        },
        "variable of the wrong type": {
            "query": "query($n: Int!) { coverageGaps(first: $n) { totalCount } }",
            "variables": {"n": "5; DROP TABLE x"},
        },
        "variable too big for Int": {
            "query": "query($n: Int!) { coverageGaps(first: $n) { totalCount } }",
            "variables": {"n": 2**40},
        },
        "operationName not in the document": {
            "query": "query A { cplSnapshot { snapshotId } }",
            "operationName": "B",
        },
        "a batch of two": [
            {"query": "{ cplSnapshot { snapshotId } }"},
            {"query": "{ cplSnapshot { snapshotId } }"},
        ],
        "a bare string": "{ cplSnapshot { snapshotId } }",
        "null": None,
    }.items():
        yield GraphQLCase(name, body)
    for name, raw in {
        "not JSON": b"{ cplSnapshot { snapshotId } }",
        "truncated JSON": b'{"query": "{ cplSnapshot',
        "invalid UTF-8": b'{"query": "\xff\xfe"}',
        "deeply nested JSON": b'{"query": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        "empty body": b"",
    }.items():
        yield GraphQLCase(name, None, raw=raw)
