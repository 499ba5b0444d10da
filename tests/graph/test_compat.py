"""Breaking changes are caught before clients see them (issue 21): `cfl-graph schema check OLD` lists the
breaking and dangerous changes from an older client SDL to today's and exits 1 on a breaking one; a
field, argument or enum value deprecated in the older SDL may be removed or retyped (a retirement); and
today's graph breaks nothing against the committed baseline, the client SDL of the last release."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema

from cfl_graph.doors.graph import Graph
from cfl_graph.doors.graph.compat import compare, deprecation_of
from cfl_graph.doors.graph.sdl import BASELINE, sdl_path
from tests.fixtures.cli import run_cli

NO_DATABASE = "sqlite+aiosqlite:///unused.sqlite3"
CLIENT = sdl_path(Graph.COMBINED).read_text(encoding="utf-8")


def older(tmp_path: Path, sdl: str) -> Path:
    """An older client SDL in a file, as a release left it."""
    path = tmp_path / "old-client.graphql"
    path.write_text(sdl, encoding="utf-8")
    return path


def with_field(sdl: str, type_name: str, field: str) -> str:
    """`sdl` with one more field on `type_name`."""
    opening = f"type {type_name} implements Node {{\n"
    assert opening in sdl, type_name
    return sdl.replace(opening, f"{opening}  {field}\n", 1)


def test_today_s_graph_breaks_nothing_against_the_last_release() -> None:
    """The check CI runs: a field removed or retyped without deprecation fails here until the baseline
    is moved on purpose (docs/graphql.md)."""
    answer = run_cli(NO_DATABASE, "schema", "check", str(BASELINE))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert answer.stdout.splitlines()[0] == "breaking: 0"


def test_a_removed_field_is_named_and_fails_the_check(tmp_path: Path) -> None:
    old = older(tmp_path, with_field(CLIENT, "DeviceModel", "meterCount: Int"))
    answer = run_cli(NO_DATABASE, "schema", "check", str(old))
    assert answer.returncode == 1, answer.stdout + answer.stderr
    assert answer.stdout.splitlines()[:2] == [
        "breaking: 1",
        "  FIELD_REMOVED: Field DeviceModel.meterCount was removed.",
    ]


def test_a_field_deprecated_in_the_older_release_may_go(tmp_path: Path) -> None:
    field = 'meterCount: Int @deprecated(reason: "Count them in your own fleet graph.")'
    old = older(tmp_path, with_field(CLIENT, "DeviceModel", field))
    answer = run_cli(NO_DATABASE, "schema", "check", str(old))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert answer.stdout.splitlines()[:3] == [
        "breaking: 0",
        "removed or changed after deprecation: 1",
        '  FIELD_REMOVED: Field DeviceModel.meterCount was removed. (deprecated: "Count them in your own '
        'fleet graph.")',
    ]


def test_a_retyped_field_fails_and_an_added_enum_value_is_dangerous_only(tmp_path: Path) -> None:
    retyped = CLIENT.replace("  modelName: String\n", "  modelName: Int\n", 1)
    assert retyped != CLIENT
    answer = run_cli(NO_DATABASE, "schema", "check", str(older(tmp_path, retyped)))
    assert answer.returncode == 1
    assert (
        "  FIELD_CHANGED_KIND: Field DeviceModel.modelName changed type from Int to String." in answer.stdout
    )

    without_value = CLIENT.replace("  HCALCS\n", "", 1)
    assert without_value != CLIENT
    answer = run_cli(NO_DATABASE, "schema", "check", str(older(tmp_path, without_value)))
    assert answer.returncode == 0, answer.stdout
    assert "dangerous: 1" in answer.stdout
    assert "VALUE_ADDED_TO_ENUM: Enum value DeviceType.HCALCS was added." in answer.stdout


def test_the_deprecated_smets_version_of_a_device_model_may_be_retired_from_today_s_graph() -> None:
    old = build_schema(CLIENT)
    deprecated = [
        line for line in CLIENT.splitlines() if line.startswith("  smetsVersion: SmetsVersion @deprecated")
    ]
    assert len(deprecated) == 1
    new = build_schema(CLIENT.replace(deprecated[0] + "\n", "", 1))
    comparison = compare(old, new)
    assert comparison.ok and comparison.breaking == []
    [retired] = comparison.retired
    assert retired.description == "Field DeviceModel.smetsVersion was removed."
    assert retired.deprecation is not None and "use smetsVersions" in retired.deprecation


@pytest.mark.parametrize(
    ("description", "deprecated"),
    [
        ("Field Query.old was removed.", True),
        ("Field Query.kept was removed.", False),
        ("Argument Query.list(oldFirst:) was removed.", True),
        ("Argument Query.list(first:) has changed type from Int to String.", False),
        ("A required argument Query.list(after:) was added.", False),
        ("Enum value Kind.OLD was removed.", True),
        ("Enum value Kind.NEW was removed.", False),
        ("Field Filter.old changed type from String to Int.", True),
        ("Kind was removed.", False),
        ("Argument @tag(name:) was removed.", False),
    ],
)
def test_what_a_change_names_is_looked_up_as_the_older_sdl_deprecates_it(
    description: str, deprecated: bool
) -> None:
    old = build_schema(
        """
        enum Kind { NEW OLD @deprecated(reason: "gone") }
        input Filter { old: String @deprecated(reason: "gone") }
        type Query {
          kept: Int
          old: Int @deprecated(reason: "gone")
          list(first: Int, oldFirst: Int @deprecated(reason: "gone"), filter: Filter): [Kind]
        }
        """
    )
    assert (deprecation_of(old, description) == "gone") is deprecated


def test_an_sdl_no_tool_can_build_is_refused_with_the_file_and_why(tmp_path: Path) -> None:
    federated = older(tmp_path, sdl_path(Graph.CPL).read_text(encoding="utf-8"))
    answer = run_cli(NO_DATABASE, "schema", "check", str(federated))
    assert answer.returncode == 2
    assert (
        f"{federated}: not a GraphQL schema graphql-core can build: Unknown directive '@link'."
        in answer.stderr
    )
    missing = run_cli(NO_DATABASE, "schema", "check", str(tmp_path / "none.graphql"))
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"{tmp_path / 'none.graphql'}: cannot be read (No such file or directory)",
    )
