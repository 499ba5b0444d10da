"""What a GraphQL document's answer is made of: the CPL snapshot, the library's records, both or
neither, read from the fields' subgraph tags (`cfl_graph/doors/graph/node.py`). The response cache keys an
answer on
what it reads only, so a publication leaves cached CPL-only answers alone and a new snapshot renews
everything that shows CPL facts.

The rule follows the design: the `cpl` subgraph's fields read the CPL snapshot alone; the `cfl`
subgraph's fields read the library and the current snapshot they are joined with; keys and ids
(`both`) read nothing; a field may say otherwise in its metadata (`reads`), as `deviceModels` does
(its `hasCoverageGap` filter asks the library). Untagged fields belong to types reached only through
tagged fields, which already count.
"""

from __future__ import annotations

import enum
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)


class Reads(enum.Flag):
    NOTHING = 0
    CPL = enum.auto()
    LIBRARY = enum.auto()


_BY_SUBGRAPH = {
    "cpl": Reads.CPL,
    "cfl": Reads.CPL | Reads.LIBRARY,
    "combined": Reads.CPL | Reads.LIBRARY,
    "both": Reads.NOTHING,
}
_BY_NAME = {"cpl": Reads.CPL, "cfl": Reads.LIBRARY}


def _kept(metadata: dict[str, Any]) -> bool:
    """Whether an answer holding the field may be kept: not when it reads state the cache's key does not
    name (sync runs: a rejected sync changes them and neither the snapshot nor the library)."""
    return bool(metadata.get("cacheable", True))


def _field_reads(metadata: dict[str, Any]) -> Reads:
    if (explicit := metadata.get("reads")) is not None:
        reads = Reads.NOTHING
        for name in explicit:
            reads |= _BY_NAME[name]
        return reads
    return _BY_SUBGRAPH.get(metadata.get("subgraph", ""), Reads.NOTHING)


class _Collect(Visitor):
    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.reads = Reads.NOTHING
        self.unknown = False

    def enter_field(self, node: FieldNode, *_: object) -> None:
        definition = self.type_info.get_field_def()
        if definition is None:
            if not node.name.value.startswith("__"):
                self.unknown = True
            return
        field = (definition.extensions or {}).get("strawberry-definition")
        metadata = dict(getattr(field, "metadata", None) or {})
        self.reads |= _field_reads(metadata)
        if not _kept(metadata):
            self.unknown = True


def selected_operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode | None:
    """The operation a request runs, as graphql-core would pick it; None if there is no single one."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    named = [op for op in operations if op.name is not None and op.name.value == operation_name]
    return named[0] if len(named) == 1 else None


def query_reads(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None) -> Reads | None:
    """What the answer to the document's query reads, over every field of every definition in it (a
    fragment counts wherever it is spread); None when it is not one query whose every field is known
    and keyed (a mutation, a request that will fail validation, a field marked `cacheable: False`):
    such answers are not shared."""
    operation = selected_operation(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    type_info = TypeInfo(schema)
    collect = _Collect(type_info)
    visit(document, TypeInfoVisitor(type_info, collect))
    return None if collect.unknown else collect.reads
