"""A generated corpus of hostile GraphQL requests (issue 9): each must get a clear error, never a 5xx,
never data it should not, and never a change of state."""

from __future__ import annotations

import json
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
    method: str = "POST"
    params: dict[str, str] | None = None  # the query string of a GET
    content_type: str = "application/json"  # of a raw body


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
    yield from _variables()
    yield from _directives()
    yield from _introspection()
    yield from _mutation_floods()
    yield from _operations_and_transport()
    yield from _strings()


IMAGE_ID = 1  # the world's published image
GAPS = "query($n: Int!) { coverageGaps(first: $n) { totalCount } }"
FILTERED = "query($f: DeviceModelFilter) { deviceModels(first: 1, filter: $f) { totalCount } }"
GROUPED = "query($g: ReportGroupBy!) { coverageSummary(groupBy: $g) { key } }"


def _variables() -> Iterator[GraphQLCase]:
    """Variables of the wrong type, shape or size."""
    for name, query, variables in [
        ("an Int given a float", GAPS, {"n": 1.5}),
        ("an Int given a boolean", GAPS, {"n": True}),
        ("an Int given a list", GAPS, {"n": [1, 2]}),
        ("an Int given an object", GAPS, {"n": {"$gt": 0}}),
        ("a non-null Int given null", GAPS, {"n": None}),
        ("a required variable left out", GAPS, {}),
        ("an enum given in lower case", GROUPED, {"g": "manufacturer"}),
        ("an enum given a number", GROUPED, {"g": 1}),
        ("an input object given a string", FILTERED, {"f": "manufacturerId=10B2"}),
        ("an input object with an unknown field", FILTERED, {"f": {"manufacturerId": "10B2", "admin": True}}),
        ("an input field of the wrong type", FILTERED, {"f": {"hasCoverageGap": "yes"}}),
        ("an input object nested 500 deep", FILTERED, {"f": _nested_object(500)}),
        ("a filter of 20,000 unknown fields", FILTERED, {"f": {f"field{i}": i for i in range(20_000)}}),
        ("a 500 KB string variable", FILTERED, {"f": {"search": "x" * 500_000}}),
        (
            "a variable default of the wrong type",
            'query($n: Int = "ten") { coverageGaps(first: $n) { totalCount } }',
            {},
        ),
        (
            "a variable of an unknown type",
            "query($n: Number) { coverageGaps(first: $n) { totalCount } }",
            {"n": 1},
        ),
        ("a variable of an output type", "query($s: CplSnapshot) { cplSnapshot { snapshotId } }", {"s": {}}),
        (
            "a variable used as the wrong type",
            "query($s: String) { coverageGaps(first: $s) { totalCount } }",
            {"s": "1"},
        ),
    ]:
        yield GraphQLCase(f"variables: {name}", {"query": query, "variables": variables})
    deep = "{ deviceModels(first: 1, filter: " + "{search: " * 300 + '"x"' + "}" * 300 + ") { totalCount } }"
    yield GraphQLCase("an input object literal nested 300 deep", {"query": deep})
    yield GraphQLCase(
        "an Int literal past 64 bits",
        {"query": "{ deviceModels(first: 99999999999999999999) { totalCount } }"},
    )
    yield GraphQLCase("a float literal for an Int", {"query": "{ deviceModels(first: 1.5) { totalCount } }"})


def _nested_object(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"search": "x"}
    for _ in range(depth):
        value = {"search": value}
    return value


def _directives() -> Iterator[GraphQLCase]:
    field_ = "cplSnapshot { snapshotId }"
    for name, query in [
        (
            "@skip repeated 1,000 times on one field",
            "{ cplSnapshot " + "@skip(if: false) " * 1000 + "{ snapshotId } }",
        ),
        ("@include repeated twice", "{ cplSnapshot @include(if: true) @include(if: true) { snapshotId } }"),
        (
            "4,000 fields each under @include(if: false)",
            "{ " + f"{field_[:11]} @include(if: false) {{ snapshotId }} " * 4000 + "}",
        ),
        ("@skip without its argument", "{ cplSnapshot @skip { snapshotId } }"),
        ("@skip given a string", '{ cplSnapshot @skip(if: "yes") { snapshotId } }'),
        ("@skip given an Int variable", "query($n: Int) { cplSnapshot @skip(if: $n) { snapshotId } }"),
        ("@skip on the operation", "query @skip(if: true) { cplSnapshot { snapshotId } }"),
        ("@deprecated in a query", "{ cplSnapshot @deprecated { snapshotId } }"),
        ("a federation directive in a query", '{ cplSnapshot @key(fields: "id") { snapshotId } }'),
        ("@defer, which this graph does not offer", "{ ... @defer { cplSnapshot { snapshotId } } }"),
        (
            "an unknown directive on a fragment",
            "{ ...F } fragment F on Query @evil { cplSnapshot { snapshotId } }",
        ),
    ]:
        yield GraphQLCase(f"directives: {name}", {"query": query})


def _introspection() -> Iterator[GraphQLCase]:
    chain = "name"
    for _ in range(30):
        chain = f"ofType {{ {chain} }}"
    yield GraphQLCase(
        "introspection: an ofType chain 30 deep",
        {"query": f"{{ __schema {{ types {{ fields {{ type {{ {chain} }} }} }} }} }}"},
        frozenset({"QUERY_TOO_DEEP"}),
    )
    yield GraphQLCase(
        "introspection: __type fields of fields 12 deep",
        {"query": '{ __type(name: "Query") { ' + "fields { type { " * 6 + "name" + " } }" * 6 + " } }"},
        frozenset({"QUERY_TOO_DEEP"}),
    )
    aliases = " ".join(f"s{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(40))
    yield GraphQLCase(
        "introspection: 40 aliased __schema", {"query": f"{{ {aliases} }}"}, frozenset({"TOO_MANY_ALIASES"})
    )
    yield GraphQLCase("introspection: 6,000 __typename", {"query": "{ " + "__typename " * 6000 + "}"})
    yield GraphQLCase(
        "introspection: __type of an unknown type name", {"query": "{ __type(name: 5) { name } }"}
    )


def _mutation_floods() -> Iterator[GraphQLCase]:
    withdraw = f'withdrawImage(id: "{IMAGE_ID}", reason: "short") {{ state }}'
    yield GraphQLCase(
        "mutations: 25 withdrawals in one document",
        {"query": "mutation { " + " ".join(f"w{i}: {withdraw}" for i in range(25)) + " }"},
        frozenset({"TOO_MANY_ROOT_FIELDS", "TOO_MANY_ALIASES"}),
    )
    yield GraphQLCase(
        "mutations: 15 refused withdrawals in one document",
        {"query": "mutation { " + " ".join(f"w{i}: {withdraw}" for i in range(15)) + " }"},
    )
    discards = " ".join(f'd{i}: discardImage(id: "{900_000 + i}")' for i in range(15))
    yield GraphQLCase(
        "mutations: 15 discards of images that do not exist", {"query": f"mutation {{ {discards} }}"}
    )
    declare = (
        'declareCommercial(manufacturerId: "2C4F", modelId: "0007", hardwareVersion: "0001", '
        'firmwareVersion: "03000000", reason: "someone else\'s version") { reason }'
    )
    yield GraphQLCase(
        "mutations: 10 declarations for another manufacturer",
        {"query": "mutation { " + " ".join(f"c{i}: {declare}" for i in range(10)) + " }"},
    )
    yield GraphQLCase(
        "mutations: a mutation inside a query",
        {"query": f'{{ publishImage(id: "{IMAGE_ID}") {{ state }} }}'},
    )


def _operations_and_transport() -> Iterator[GraphQLCase]:
    two = "query A { cplSnapshot { snapshotId } } query B { cplSnapshot { snapshotId } }"
    mixed = f'query Q {{ cplSnapshot {{ snapshotId }} }} mutation M {{ publishImage(id: "{IMAGE_ID}") {{ state }} }}'
    for name, body in [
        (
            "operationName for an anonymous operation",
            {"query": "{ cplSnapshot { snapshotId } }", "operationName": "A"},
        ),
        ("two named operations and no operationName", {"query": two}),
        ("operationName a number", {"query": two, "operationName": 1}),
        ("operationName with a NUL", {"query": two, "operationName": "A\u0000"}),
        ("operationName choosing a refused mutation", {"query": mixed, "operationName": "M"}),
    ]:
        yield GraphQLCase(f"operations: {name}", body)
    publish = f'mutation {{ publishImage(id: "{IMAGE_ID}") {{ state }} }}'
    for name, params in [
        ("a mutation", {"query": publish}),
        ("a mutation named by operationName", {"query": mixed, "operationName": "M"}),
        ("no query", {}),
        ("variables that are not JSON", {"query": GAPS, "variables": "{n: 5"}),
        ("a 40 KB query string", {"query": "{ " + "cplSnapshot { snapshotId } " * 1500 + "}"}),
    ]:
        yield GraphQLCase(f"GET with {name}", None, method="GET", params=params)
    body = b'{"query": "{ cplSnapshot { snapshotId } }"}'
    for name, content_type in [
        ("text/plain", "text/plain"),
        ("form-urlencoded", "application/x-www-form-urlencoded"),
        ("multipart without parts", "multipart/form-data; boundary=x"),
        ("application/graphql", "application/graphql"),
    ]:
        yield GraphQLCase(f"JSON sent as {name}", None, raw=body, content_type=content_type)


def _strings() -> Iterator[GraphQLCase]:
    """Unicode escapes and NUL bytes where the graph takes text."""
    for name, query, variables in [
        ("a NUL in a search", FILTERED, {"f": {"search": "Northfield\u0000"}}),
        (
            "a NUL in a manufacturer id",
            "query($m: String!) { consistencyReport(manufacturerId: $m) { manufacturerId } }",
            {"m": "10B2\u0000"},
        ),
        (
            "a NUL in a device model key",
            '{ deviceModel(manufacturerId: "10B2\\u0000", modelId: "0001", hardwareVersion: "0100") { modelName } }',
            None,
        ),
        (
            "a lone surrogate escape",
            '{ deviceModels(first: 1, filter: {search: "\\uD800"}) { totalCount } }',
            None,
        ),
        (
            "a right-to-left override in an id",
            '{ consistencyReport(manufacturerId: "10\\u202eB2") { manufacturerId } }',
            None,
        ),
        ("an escape in a field name", "{ cplSn\\u0061pshot { snapshotId } }", None),
        (
            "a NUL in a withdrawal reason",
            'mutation($r: String!) { withdrawImage(id: "1", reason: $r) { state } }',
            {"r": "a perfectly good reason\u0000"},
        ),
        (
            "a node id decoding to a NUL key",
            "query($i: ID!) { node(id: $i) { id } }",
            {"i": "RGV2aWNlTW9kZWw6MTBCMgA6MDAwMTowMTAw"},
        ),
        ("a node id of 100 KB", "query($i: ID!) { node(id: $i) { id } }", {"i": "QUFB" * 25_000}),
        ("a cursor that is not UTF-8", '{ deviceModels(first: 1, after: "//79") { totalCount } }', None),
        ("an image id of emoji", '{ libraryImage(id: "😀") { state } }', None),
        ("a 10,000-character field name", "{ " + "x" * 10_000 + " }", None),
        ("a lone surrogate in a variable", FILTERED, {"f": {"search": "Northfield \ud800"}}),
        ("a bell in a search", FILTERED, {"f": {"search": "North\x07field"}}),
        (
            "a bell in a withdrawal reason",
            'mutation($r: String!) { withdrawImage(id: "1", reason: $r) { state } }',
            {"r": "a perfectly\x07 good reason"},
        ),
        (
            "a device model key that is not hex",
            '{ deviceModel(manufacturerId: "10B2", modelId: "ZZ01", hardwareVersion: "0100") { modelName } }',
            None,
        ),
        (
            "a node id whose key is not hex",
            "query($i: ID!) { node(id: $i) { id } }",
            {"i": "Q2VydGlmaWVkRmlybXdhcmU6MTBCMjowMDAxOjAxMDA6Tk9UIEhFWA=="},
        ),
    ]:
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        # As JSON escapes (\\u0000, \\ud800): a lone surrogate has no UTF-8 form to send otherwise.
        yield GraphQLCase(f"strings: {name}", None, raw=json.dumps(body).encode())
