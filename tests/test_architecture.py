"""Rules that are written once stay written once (issue 14): who may see a draft is decided by the image
lifecycle alone, and every door that syncs the CPL syncs it as the library does (published images
following each snapshot). These read the source, so a second copy of a rule fails the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ("cfl_graph", "schema", "loaders", "cpl_sync")


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


DOORS = (
    "cfl_graph/views/",
    "schema/",
    "cfl_graph/cli/",
    "cfl_graph/app.py",
    "cfl_graph/access/middleware.py",
)


def test_the_doors_hold_no_sql() -> None:
    """The web views, the graph's resolvers, the CLI and the app ask services; a statement written in a
    door is a rule written twice (issue 16)."""
    sql = re.compile(
        r"\bsession\.(execute|scalar|scalars|get)\(|from sqlalchemy import [^\n]*\b(select|update|delete|insert)\b"
    )
    offenders = {name for name, text in _sources().items() if name.startswith(DOORS) and sql.search(text)}
    assert offenders == set()
