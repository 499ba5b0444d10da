"""The GraphQL schemas' SDL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cfl_graph.doors.cli.common import EXIT_FETCH, EXIT_REJECTED, err, out

schema_app = typer.Typer(help="The GraphQL schemas' SDL.", no_args_is_help=True)


@schema_app.command("print")
def schema_print(
    graph: Annotated[str, typer.Argument(help="combined, cpl or cfl.")] = "combined",
) -> None:
    """Print a schema's SDL (the subgraphs' with their federation directives)."""
    from cfl_graph.doors.graph import Graph, build_schema

    try:
        chosen = Graph(graph)
    except ValueError:
        err.print(f"no graph {graph!r}: choose combined, cpl or cfl")
        raise typer.Exit(EXIT_REJECTED) from None
    print(build_schema(graph=chosen).as_str())


@schema_app.command("write")
def schema_write() -> None:
    """Rewrite schema/sdl/*.graphql from the code (a test fails while they differ)."""
    from cfl_graph.doors.graph.sdl import write_sdl_files

    for path in write_sdl_files():
        out.print(f"wrote {path}", markup=False, highlight=False)


@schema_app.command("check")
def schema_check(
    old: Annotated[
        Path, typer.Argument(help="An older client SDL, such as schema/sdl/baseline/client.graphql.")
    ],
) -> None:
    """List breaking and dangerous changes from OLD to today's client graph; exit 1 on a breaking one."""
    from cfl_graph.doors.graph.compat import SdlUnreadable, check_against

    try:
        comparison = check_against(old)
    except SdlUnreadable as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FETCH) from None  # 2, as for a CPL source that cannot be read
    print("\n".join(comparison.lines()))
    if not comparison.ok:
        raise typer.Exit(EXIT_REJECTED)
