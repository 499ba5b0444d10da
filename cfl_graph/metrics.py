"""What the service counts for Prometheus (issue 18), and the library's state read at scrape time.

Counters and histograms are kept by each process; `cfl-graph serve --workers N` runs prometheus-client in
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `serve`), so whichever worker is scraped reports
the sum of all of them. What the database knows (images by state, CPL sync runs) is read from it when
scraped, so it is the library's, the same from every node, whoever made the change (the CLI included).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.tables import CplSyncRun, LibraryImage
from cfl_graph.tables.images import ImageState

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
STATEMENT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 100)

REQUESTS = Counter(
    "cfl_http_requests", "HTTP requests answered, by method, route and status", ["method", "route", "status"]
)
LATENCY = Histogram(
    "cfl_http_request_duration_seconds",
    "Time from a request's arrival to its answer's end, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
SQL_STATEMENTS = Histogram(
    "cfl_sql_statements_per_request",
    "SQL statements a request ran, by route",
    ["route"],
    buckets=STATEMENT_BUCKETS,
)
GRAPHQL_OPERATIONS = Counter(
    "cfl_graphql_operations",
    "GraphQL operations by graph, operation name and outcome (ok, cached, errors, refused)",
    ["graph", "operation", "outcome"],
)
CACHE = Counter(
    "cfl_cache_lookups",
    "Lookups in the answer cache and the persisted queries, by result",
    ["cache", "result"],
)
# Each counter's series by its label values, found once: prometheus-client's `labels()` costs as much as
# a cache lookup or a request's bookkeeping. As many as the label values, which their callers bound.
_series: dict[tuple[Counter, tuple[str, ...]], Counter] = {}


def count(counter: Counter, *values: str) -> None:
    """One more on `counter`'s series of `values` (its label values, in the order of its label names)."""
    series = _series.get((counter, values))
    if series is None:
        series = _series[(counter, values)] = counter.labels(*values)
    series.inc()


def count_cache_lookup(cache: str, hit: bool) -> None:
    """One more lookup in `cache` (`answers`, `persisted_queries`)."""
    count(CACHE, cache, "hit" if hit else "miss")


DOWNLOADS = Counter("cfl_downloads", "Image downloads that sent bytes, by status (200, 206)", ["status"])
DOWNLOAD_BYTES = Counter("cfl_download_bytes", "Image bytes sent by downloads")
RATE_LIMITED = Counter(
    "cfl_rate_limit_refusals", "Requests refused 429, by what was counted (token or address)", ["per"]
)
# Labelled, so that a node without Redis shows no sample rather than a 0 (`use` is always "shared_state").
REDIS_UP = Gauge(
    "cfl_redis_up",
    "1 while every live worker reaches the shared Redis, 0 if one cannot (absent without CFL_REDIS_URL)",
    ["use"],
    multiprocess_mode="livemin",
)
REDIS_ERRORS = Counter(
    "cfl_redis_errors", "Calls to the shared Redis that failed (each then answered locally)"
)

# GraphQL operation names are the client's to choose: kept as labels only when they look like names, and
# only so many per process, so that no client can grow the metrics without bound.
OPERATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_OPERATION_NAMES = 200
_operation_names: set[str] = set()


def operation_label(name: str | None) -> str:
    if name is None:
        return "(anonymous)"
    if not OPERATION_NAME.fullmatch(name):
        return "(other)"
    if name not in _operation_names:
        if len(_operation_names) >= MAX_OPERATION_NAMES:
            return "(other)"
        _operation_names.add(name)
    return name


class LibraryState(Collector):
    """The families read from the database at scrape time (filled in by `read_library_state`)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


async def read_library_state(session: AsyncSession) -> list[Metric]:
    """Images by state (held ones included), and CPL sync runs by outcome with their rows and the
    latest run's duration."""
    images = GaugeMetricFamily("cfl_library_images", "Library images by state", labels=["state"])
    counts = dict(
        (await session.execute(select(LibraryImage.state, func.count()).group_by(LibraryImage.state)))
        .tuples()
        .all()
    )
    for state in ImageState:
        images.add_metric([state.value], counts.get(state, 0))
    runs = CounterMetricFamily("cfl_cpl_sync_runs", "CPL sync runs by outcome", labels=["outcome"])
    rows = CounterMetricFamily(
        "cfl_cpl_sync_rows", "CPL rows read by sync runs, by outcome", labels=["outcome"]
    )
    duration = GaugeMetricFamily(
        "cfl_cpl_sync_last_duration_seconds",
        "How long the latest sync run of each outcome took",
        labels=["outcome"],
    )
    finished = GaugeMetricFamily(
        "cfl_cpl_sync_last_finished_timestamp_seconds",
        "When the latest run of each outcome ended",
        labels=["outcome"],
    )
    grouped = await session.execute(
        select(
            CplSyncRun.outcome,
            func.count(),
            func.coalesce(func.sum(CplSyncRun.row_count), 0),
            func.max(CplSyncRun.id),
        ).group_by(CplSyncRun.outcome)
    )
    latest_ids = []
    for outcome, count, row_sum, latest in grouped.tuples().all():
        runs.add_metric([outcome.value], count)
        rows.add_metric([outcome.value], row_sum or 0)
        latest_ids.append(latest)
    latest_runs = (await session.execute(select(CplSyncRun).where(CplSyncRun.id.in_(latest_ids)))).scalars()
    for run in latest_runs:
        if run.finished_at is not None:
            duration.add_metric([run.outcome.value], (run.finished_at - run.started_at).total_seconds())
            finished.add_metric([run.outcome.value], run.finished_at.timestamp())
    return [images, runs, rows, duration, finished]


def exposition(metrics_dir: Path | None, library: list[Metric]) -> bytes:
    """A scrape's text: every worker's counters (multiprocess mode) or this process's, then the
    library's state."""
    if metrics_dir is not None:
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    else:
        workers = REGISTRY
    state = CollectorRegistry()
    state.register(LibraryState(library))
    return generate_latest(workers) + generate_latest(state)


def worker_stopped(metrics_dir: Path | None) -> None:
    """A worker that stops takes its live gauges with it (`livemin` counts the workers still running)."""
    if metrics_dir is not None:
        multiprocess.mark_process_dead(os.getpid(), path=str(metrics_dir))  # type: ignore[no-untyped-call]
