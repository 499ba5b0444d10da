"""What every command shares: its consoles and exit codes, the settings, a database opened and closed
around the work (refused, exit 3, while migrations are pending), numeric argument parsers, the progress
bar, and how a list is printed (`emit`: a table, JSON lines or CSV, `--format`)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cfl_graph import migrate
from cfl_graph.database import Database, database_unavailable
from cfl_graph.identifiers import InvalidValue
from cfl_graph.observability import JsonLines, PlainLines, RequestIdFilter
from cfl_graph.row_ids import MAX_ROW_ID, row_id
from cfl_graph.settings import Settings, SettingsError, from_env

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

EXIT_REJECTED = 1
EXIT_FETCH = 2
EXIT_FAILED = 3


def settings_from_env(default_log_level: str = "WARNING") -> Settings:
    try:
        settings = from_env()
    except SettingsError as exc:
        err.print(f"configuration error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    configure_logging(settings, default_log_level)
    return settings


def configure_logging(settings: Settings, default_level: str) -> None:
    """The root logger in the format asked for (CFL_LOG_FORMAT), each record with its request's id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(PlainLines())
    logging.basicConfig(level=settings.log_level or default_level, handlers=[handler])


class SchemaMissing(Exception):
    """The database lacks migrations a command needs; the message says what to run."""


def with_db(settings: Settings, work: Callable[[Database], Awaitable[T]], *, needs_schema: bool = True) -> T:
    """Run `work` on the database; first, unless it is `db upgrade`, make sure the schema is current, so
    that an un-migrated database is told as such (exit 3) and not as the first query's failure."""

    async def run() -> T:
        db = Database.connect(settings.database_url)
        try:
            if needs_schema:
                await require_schema(db)
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except SchemaMissing as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


async def require_schema(db: Database) -> None:
    try:
        pending = await migrate.pending(db.engine)
    except Exception as exc:
        if database_unavailable(exc):
            raise SchemaMissing(
                f"cannot reach the database ({type(exc).__name__}); check CFL_DATABASE_URL and that it runs"
            ) from None
        raise
    if pending:
        raise SchemaMissing(
            f"the database lacks migrations {', '.join(pending)}; run `cfl-graph db upgrade` first"
        )


def number_parser(what: str, *, minimum: int = 1, maximum: int = MAX_ROW_ID) -> Callable[[str], int]:
    """A parser for a numeric argument: ASCII digits within the bounds (`cfl_graph.row_ids`), so that
    '٣' is not read as 3 nor a number past the id columns sent to the database."""

    def parse(raw: str | int) -> int:
        try:
            return row_id(raw, what, minimum=minimum, maximum=maximum)
        except InvalidValue as exc:
            raise typer.BadParameter(exc.reason) from None

    return parse


SNAPSHOT_ID = number_parser("a snapshot id")
EVENT_ID = number_parser("an event id")
RUN_ID = number_parser("a sync run's id")
HOW_MANY = number_parser("a count", maximum=100_000)


def progress_bar() -> Progress:
    """A bar on stderr when it is a terminal; silent in scripts and tests."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


class RichProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FORMAT_HELP = (
    "table (the terminal's width; ids never cut), json (one object per line) or csv (a header row, then a "
    "row per item)."
)
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", case_sensitive=False, help=FORMAT_HELP, show_default=True)
]


@dataclass(frozen=True)
class Field:
    """A column of a list: its key in JSON and CSV, and its heading in a table."""

    key: str
    heading: str
    numeric: bool = False


def emit(fields: Sequence[Field], items: Iterable[Mapping[str, Any]], form: OutputFormat) -> None:
    """Print a list as a table for people, or as JSON lines or CSV for scripts, every value whole.

    A table takes the terminal's width when there is one (longer values fold onto more lines, never
    cut), and its own natural width when there is none (a pipe, a file), so nothing is lost at 80 columns.
    """
    rows = list(items)
    if form is OutputFormat.JSON:
        for row in rows:
            sys.stdout.write(
                json.dumps({f.key: _plain(row.get(f.key)) for f in fields}, ensure_ascii=False) + "\n"
            )
        return
    if form is OutputFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([f.key for f in fields])
        for row in rows:
            writer.writerow([_cell(_plain(row.get(f.key))) for f in fields])
        return
    table = Table(box=box.SIMPLE_HEAD if out.is_terminal else box.ASCII2)
    for f in fields:
        table.add_column(f.heading, overflow="fold", justify="right" if f.numeric else "left")
    for row in rows:
        table.add_row(*(_shown(row.get(f.key)) for f in fields))
    if out.is_terminal:
        out.print(table)
    else:
        unbounded = Console(width=100_000, highlight=False, no_color=True)
        natural = unbounded.measure(table).maximum
        Console(width=max(natural, 20), highlight=False, no_color=True).print(table)


def _plain(value: Any) -> Any:
    """A value as JSON and CSV carry it: times and dates in ISO 8601, enums as their values."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> Any:
    """A CSV cell: nothing for a missing value, a list's items joined by "; "."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return value


def _shown(value: Any) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, int):
        return Text(f"{value:,}")
    if isinstance(value, dt.datetime):
        return Text(value.strftime("%Y-%m-%d %H:%M:%S"))
    if isinstance(value, dt.date):
        return Text(value.isoformat())
    if isinstance(value, list | tuple):
        return Text(", ".join(str(_plain(v)) for v in value))
    return Text(str(_plain(value)))
