"""Databases for tests: a fresh SQLite file per test, and PostgreSQL wherever a server answers.

Every test that takes `db` runs twice, on SQLite and on PostgreSQL. Without a PostgreSQL server the
PostgreSQL half is skipped with a loud warning, except under CI (CI=true or CFL_TEST_REQUIRE_POSTGRES=1),
where it fails: CI must run them.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

import cfl_graph.doors.graph as graph_schemas
from cfl_graph import migrate
from cfl_graph.database import Database
from cfl_graph.doors.graph import plans
from cfl_graph.tables import GENESIS_HASH, Base
from tests.fixtures import capabilities, figures, provision

POSTGRES_ADMIN_DSN = os.environ.get("CFL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = capabilities.REQUIRED  # CI=true or CFL_TEST_REQUIRE_POSTGRES=1
_postgres_problem: list[str] = []

# Every query the suite sends is answered by its compiled plan and by graphql-core's executor, and a
# difference of one byte fails the request (cfl_graph/doors/graph/plans.py, issue 17): in this process
# (schemas built with plans on are built to check instead) and in every server process it starts.
os.environ.setdefault("CFL_GRAPHQL_PLANS", "check")
_executor_class = plans.executor_class


def _checking_executor_class(mode: plans.PlanMode, **options: bool) -> type:
    return _executor_class(plans.PlanMode.CHECK if mode is plans.PlanMode.ON else mode, **options)


graph_schemas.executor_class = _checking_executor_class  # type: ignore[attr-defined]

# The moto S3 server and its stores, for the blob store and image tests; the machine's Redis under a
# prefix per test.
pytest_plugins = ["tests.fixtures.s3_server", "tests.fixtures.shared_redis"]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A throwaway database for this test session, migrated once; None when no server answers."""
    name = f"cfl_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _postgres_problem.append(f"{POSTGRES_ADMIN_DSN}: {type(exc).__name__}: {exc}")
        yield None
        return
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"

    async def setup() -> None:
        db = Database.connect(url)
        await migrate.upgrade(db.engine)
        await db.dispose()

    asyncio.run(setup())
    try:
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _emptied() -> str:
    """Every table emptied and every id sequence restarted, as one batch. DELETE, not TRUNCATE: a test's
    tables hold a few rows, which DELETE clears in about 4 ms where TRUNCATE takes 60 (it rewrites every
    table's files), and about 700 tests start from an empty PostgreSQL database."""
    deletes = [f'DELETE FROM "{t.name}";' for t in reversed(Base.metadata.sorted_tables)]
    restarts = (
        "DO $$ DECLARE s record; BEGIN FOR s IN SELECT sequencename FROM pg_sequences "
        "WHERE schemaname = 'public' LOOP EXECUTE format('ALTER SEQUENCE %I RESTART', s.sequencename); "
        "END LOOP; END $$;"
    )
    return " ".join([*deletes, restarts])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per test process; each test gets a copy of the file (a copy takes a
    millisecond, the eleven migrations 200 ms)."""
    path = tmp_path_factory.mktemp("template") / "cfl.sqlite3"

    async def build() -> None:
        database = Database.connect(f"sqlite+aiosqlite:///{path}")
        await migrate.upgrade(database.engine)
        async with database.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        await database.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "cfl.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str | None = request.getfixturevalue("postgres_url")
    if url is None:
        message = f"PostgreSQL unreachable ({_postgres_problem[0]})"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{message}; CI requires the PostgreSQL half of the suite")
        pytest.skip(message)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database of either kind."""
    database = Database.connect(database_url)
    if database.engine.dialect.name == "postgresql":
        async with database.engine.begin() as conn:
            raw = await conn.get_raw_connection()
            assert raw.driver_connection is not None
            await raw.driver_connection.execute(_emptied())
            # The migrations seed single rows; put them back as a fresh database has them.
            await conn.execute(
                text(f"INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, '{GENESIS_HASH}')")
            )
            await conn.execute(
                text("INSERT INTO catalogue_revision (id, revision, changed_at) VALUES (1, 0, now())")
            )
    try:
        yield database
    finally:
        await database.dispose()


# --- lanes -------------------------------------------------------------------------------------------

# Where the slow tests live: real processes killed and loaded, browsers, the federation gateway, the
# stateful and fault tests, the corpora; and any test that starts a process. CI runs everything;
# `pytest --fast` leaves these and PostgreSQL out.
SLOW = (
    "tests/reliability/",
    "tests/browser/",
    "tests/graph/test_federation.py",
    "tests/corpus/",
    # The CLI as a real process, command after command.
    "tests/test_cli.py",
    "tests/access/test_cli.py",
    "tests/images/test_cli.py",
    "tests/web/test_workers.py",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="the fast lane: leave out the slow tests (reliability, browser, federation, corpora) and the "
        "PostgreSQL half",
    )


# A test that starts a process (the CLI, a server, the gateway) pays a Python or Node start-up each time.
STARTS_A_PROCESS = re.compile(
    r"\brun_cli\(|\bServerProcess\(|sys\.executable|create_subprocess_exec|multiprocessing|get_context\("
)


def _starts_a_process(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        return function is not None and bool(STARTS_A_PROCESS.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        if str(item.path.relative_to(root)).startswith(SLOW) or _starts_a_process(item):
            item.add_marker(pytest.mark.slow)
    if not config.getoption("--fast"):
        return
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        (left if item.get_closest_marker("slow") or "postgresql" in item.nodeid else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist starts its workers (its own hook runs last)
def pytest_sessionstart(session: pytest.Session) -> None:
    """The controller (or the one process) installs what the selected slow tests need before any starts
    (tests/fixtures/provision.py); the fast lane needs none of it."""
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("--fast"):
        return
    here = config.invocation_params.dir
    selected = [here / arg.split("::")[0] for arg in config.args]
    try:
        provision.for_the_run(Path(str(config.rootpath)), selected)
    except pytest.fail.Exception as failed:
        pytest.exit(f"could not install what the tests need: {failed}", returncode=3)


# pytest-xdist: what a worker measured or missed travels to the controller, which prints it once.
_plan_counts = [0, 0]  # queries the workers compared plan against graphql-core, and plans answered


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["cfl_figures"] = list(figures.FIGURES)
        workeroutput["cfl_missing"] = list(capabilities.MISSING)
        workeroutput["cfl_postgres"] = list(_postgres_problem)
        workeroutput["cfl_plans"] = [plans.STATISTICS.compared, plans.STATISTICS.answered]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    output = getattr(node, "workeroutput", {})
    figures.FIGURES.extend(output.get("cfl_figures", []))
    capabilities.MISSING.extend(m for m in output.get("cfl_missing", []) if m not in capabilities.MISSING)
    compared, answered = output.get("cfl_plans", [0, 0])
    _plan_counts[0] += compared
    _plan_counts[1] += answered
    if output.get("cfl_postgres") and not _postgres_problem:
        _postgres_problem.extend(output["cfl_postgres"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    compared = _plan_counts[0] + plans.STATISTICS.compared  # the workers', or this process's own
    if compared:
        answered = _plan_counts[1] + plans.STATISTICS.answered
        figures.FIGURES.append(
            f"plans checked against graphql-core: {compared:,} queries of the suite answered both ways, "
            f"byte for byte the same ({answered:,} answered by a plan in all; servers the suite started "
            "checked theirs too, uncounted here)"
        )
    if figures.FIGURES:
        terminalreporter.write_sep("-", "figures measured")
        for line in figures.FIGURES:
            terminalreporter.write_line(line)
    if capabilities.MISSING:
        terminalreporter.write_sep("!", "TESTS SKIPPED FOR WANT OF A CAPABILITY", red=True, bold=True)
        for reason in capabilities.MISSING:
            terminalreporter.write_line(f"  {reason}", red=True)
    if _postgres_problem:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS DID NOT RUN", red=True, bold=True)
        terminalreporter.write_line(f"  {_postgres_problem[0]}", red=True)
        terminalreporter.write_line(
            "  Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            red=True,
        )
