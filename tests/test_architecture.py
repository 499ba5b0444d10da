"""Rules that are written once stay written once (issue 14): who may see a draft is decided by the image
lifecycle alone, and every door that syncs the CPL syncs it as the library does (published images
following each snapshot). The layers stay apart (issue 16): the doors (`cfl_graph/doors/`) hold no SQL
and the core never imports a door. The top level is the brief's (`../shared/DESIGN.md`). These read the
source, so a second copy of a rule fails the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ("cfl_graph", "loaders", "cpl_sync")


def _sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for package in SERVICE
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def _using(pattern: str) -> set[str]:
    found = re.compile(pattern)
    return {name for name, text in _sources().items() if found.search(text)}


def test_one_module_decides_who_sees_drafts() -> None:
    # The policy grants the action to manufacturers for their own ids; the lifecycle alone asks it.
    assert _using(r"Action\.READ_DRAFTS") == {"cfl_graph/images/lifecycle.py", "cfl_graph/access/policy.py"}


def test_no_door_compares_an_image_with_the_draft_state_but_the_lifecycle() -> None:
    # The library creates drafts and says "discard the draft first"; the tables define the state.
    assert _using(r"ImageState\.DRAFT") <= {
        "cfl_graph/images/lifecycle.py",
        "cfl_graph/images/library.py",
        "cfl_graph/tables/images.py",
    }


def test_every_door_syncs_the_cpl_with_the_library_following() -> None:
    callers = _using(r"\bsync_cpl\(") - {"cpl_sync/sync.py"}
    assert callers == {"cfl_graph/scheduler.py"}, "call cfl_graph.scheduler.sync_library instead"


def test_one_reader_decodes_every_list_s_cursors() -> None:
    assert _using(r"def (de|en)code_cursor") == {"cfl_graph/cursors.py"}


DOORS = "cfl_graph/doors/"
# Entry points: `python -m cfl_graph` runs the command line.
ENTRY_POINTS = {"cfl_graph/__main__.py"}


def test_the_doors_hold_no_sql() -> None:
    """The web views, the graph's resolvers, the CLI and the app ask services; a statement written in a
    door is a rule written twice (issue 16)."""
    sql = re.compile(
        r"\bsession\.(execute|scalar|scalars|get)\(|from sqlalchemy import [^\n]*\b(select|update|delete|insert)\b"
    )
    offenders = {name for name, text in _sources().items() if name.startswith(DOORS) and sql.search(text)}
    assert offenders == set()


def test_the_core_never_imports_a_door() -> None:
    """The domain core beneath (tables, access, audit, the CPL pipeline, the catalogue, the library, the
    loaders) is reached by the doors above it, never the other way round: the CPL pipeline never imports
    the graph, and the loaders are asked by it."""
    door_import = re.compile(r"^\s*(from|import) cfl_graph\.doors\b", re.MULTILINE)
    core = {name for name in _sources() if not name.startswith(DOORS)} - ENTRY_POINTS
    assert {name for name in core if door_import.search(_sources()[name])} == set()


def test_the_top_level_is_the_brief_s() -> None:
    """The brief's packages and no others: the service (`cfl_graph`), its DataLoaders (`loaders`) and the
    CPL pipeline (`cpl_sync`), each shipped in the distribution, beside the benchmarks, the tests and the
    examples. The GraphQL schema is a door of the service (`cfl_graph/doors/graph/`), its printed SDL in
    `schema/sdl/` (docs/decisions.md)."""
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages == {"cfl_graph", "loaders", "cpl_sync", "bench", "tests", "examples"}
    shipped = re.search(r"^include = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert shipped is not None and shipped.group(1) == '"cfl_graph*", "loaders*", "cpl_sync*"'
