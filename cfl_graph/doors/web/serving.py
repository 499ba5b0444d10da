"""How `cfl-graph serve` runs uvicorn so that idle or slow connections cannot hold a worker, and a flood
cannot fill the log.

uvicorn's h11 protocol has a keep-alive timeout (between requests) and nothing else: a connection that
sends half a request header, or a body that stops, is held open for ever, and `limit_concurrency` only
answers 503 once a whole request has arrived. `GuardedH11Protocol` adds, per connection:

- a header timeout: the request line and headers must be complete `header_timeout` seconds after the
  connection opened or the previous response ended (else 408 and close);
- a body timeout: while a request body is expected, `body_timeout` seconds with no byte from the client
  closes the connection (408 if no response has started; the application sees the client go away);
  time the server itself stops reading, to let a slow handler catch up, does not count;
- a cap of `max_connections` open connections per worker: one more is answered 503 with `Retry-After`
  and closed at once, before any of it is read, so descriptors are freed as fast as they are taken.

`logging_config` sends every record but the access log's through `RepeatedRecords`, which lets one of a
kind through per interval and tells how many it held back, and the access log through
`AccessLogSecrets`, which redacts tokens from the request lines. Refused, timed-out and garbage
connections write no access line, so a flood of them costs a few lines of the error log. With
CFL_LOG_FORMAT=json every record is one JSON object (`JsonLines`, python-json-logger) carrying the
request's id, with any API token redacted from every field; the request line the service writes itself
(`cfl_graph.doors.web.observation`) stands in for uvicorn's access log, which is then off.

On SIGTERM each worker stops accepting connections and lets the requests and uploads in flight finish
for up to CFL_SHUTDOWN_TIMEOUT seconds before it exits (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import resource
import shutil
import socket
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote_plus

import h11
import uvicorn
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from cfl_graph.access.tokens import redact
from cfl_graph.settings import Settings

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 5  # idle time allowed between requests on one connection (uvicorn's own timer)
# Descriptors a worker needs besides its client connections: the listening socket, database
# connections, blob files being read or written, logs; the connection cap stays below the process limit
# by this much, so accept() never fails for want of one.
FD_RESERVE = 256
# Connections the kernel queues for a worker, and so also how many asyncio accepts in one go before any
# is refused (uvicorn's default is 2,048): counted into the descriptors a worker may need at once, twice,
# since a refused connection's socket is closed an event-loop turn after its refusal, by when the next
# burst may have been accepted (a flood of 2,500 under load reached the limit with one burst counted).
BACKLOG = 256
BURSTS_IN_FLIGHT = 2
LOG_REPEAT_INTERVAL = 10.0
# A refused connection's request is read and dropped for up to this long after its 503, so that the
# client reads the 503 rather than a reset; at most this many at once per worker, closed at once beyond.
REFUSED_LINGER_SECONDS = 1.0
MAX_LINGERING = 256

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: 44\r\n\r\n"
    b"too many connections to this worker; retry\r\n"
)
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 35\r\n\r\n"
    b"the request did not arrive in time\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 30.0


class ServeConfig(uvicorn.Config):
    """uvicorn's configuration with our connection limits on it: it travels to worker processes with
    the rest of the configuration, where `GuardedH11Protocol` reads it."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.connection_limits = limits


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, a body timeout and a connection cap (see above)."""

    lingering: ClassVar[int] = 0  # refused connections of this worker draining before they close

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", None) or ConnectionLimits()
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None  # "header" or "body": what the deadline is for
        self._refused = False
        self._lingering = False

    # --- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Refused connections still draining are in `connections` too, but hold no place.
        if len(self.connections) - GuardedH11Protocol.lingering > self.limits.max_connections:
            self._refuse(transport)
            return
        self._expect("header")

    def _refuse(self, transport: asyncio.Transport) -> None:
        log.warning(
            "refused connections beyond %d open on this worker (CFL_MAX_CONNECTIONS): answered 503",
            self.limits.max_connections,
        )
        self._refused = True
        transport.write(_REFUSED)
        if GuardedH11Protocol.lingering < MAX_LINGERING and transport.can_write_eof():
            # Closing with the request unread would reset the connection, and the 503 with it.
            GuardedH11Protocol.lingering += 1
            self._lingering = True
            transport.write_eof()
            self.loop.call_later(REFUSED_LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # a refused connection's request is dropped unread
        super().data_received(data)
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._lingering:
            GuardedH11Protocol.lingering -= 1
            self._lingering = False
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel()  # the connection is another protocol's from here on
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn's keep-alive timer now waits for the next request (and is the shorter); a request
        # already buffered behind this one (pipelined) is followed like any other.
        self._follow()

    # --- deadlines ------------------------------------------------------------------------------------

    def _follow(self) -> None:
        """After data arrived: a head still incomplete keeps its deadline (it is not extended by each
        byte); a body being sent gets a fresh idle deadline; anything else needs none."""
        if self.transport.is_closing():
            self._cancel()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._waiting_for != "header":
                self._expect("header")
        elif state is h11.SEND_BODY:
            self._expect("body")
        else:
            self._cancel()

    def _expect(self, what: str) -> None:
        self._cancel()
        seconds = self.limits.header_timeout if what == "header" else self.limits.body_timeout
        self._waiting_for = what
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting_for = None

    def _timed_out(self) -> None:
        what, self._deadline, self._waiting_for = self._waiting_for, None, None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if what == "body" and state is h11.SEND_BODY and self.flow.read_paused:
            self._expect("body")  # we stopped reading, to let the handler catch up: not the client's fault
            return
        if (what == "header" and state is not h11.IDLE) or (what == "body" and state is not h11.SEND_BODY):
            self._follow()
            return
        limit = self.limits.header_timeout if what == "header" else self.limits.body_timeout
        log.info("closed connections whose request %s stalled for %g s", what, limit)
        if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


# --- logs ------------------------------------------------------------------------------------------------


@dataclass
class _Seen:
    since: float
    suppressed: int = 0


class RepeatedRecords(logging.Filter):
    """Lets the first of identical records (same logger, level, text and exception) through in each
    `interval` seconds and holds back the rest, counting them; the next one let through says how many
    were held back. A flood of one failure (accept() out of descriptors, a client sending garbage) then
    costs a few lines a minute, while every different record is still logged."""

    def __init__(self, name: str = "", interval: float = LOG_REPEAT_INTERVAL, max_kinds: int = 2_000) -> None:
        super().__init__(name)
        self.interval = interval
        self.max_kinds = max_kinds
        self._seen: OrderedDict[tuple[str, int, str, str], _Seen] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted: let logging itself report it
            return True
        key = (record.name, record.levelno, text[:500], repr(exception)[:500] if exception else "")
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self.interval:
            seen.suppressed += 1
            return False
        self._seen[key] = _Seen(now)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_kinds:
            self._seen.popitem(last=False)
        if seen is not None and seen.suppressed:
            note = (
                f" [and {seen.suppressed:,} more like it in the {now - seen.since:.0f} s before, not logged]"
            )
            # With args the message is a %-template, so the note's own text must not be read as one.
            record.msg = str(record.msg) + (note.replace("%", "%%") if record.args else note)
        return True


# Query parameters whose value is a secret (compared case-insensitively, after percent-decoding).
SECRET_PARAMETERS = frozenset(
    {"token", "csrf_token", "access_token", "api_key", "apikey", "password", "secret"}
)


def redact_request_target(target: str) -> str:
    """A request path with its query string's secrets replaced, and any API token anywhere redacted."""
    path, question, query = target.partition("?")
    if question:
        pairs = []
        for pair in query.split("&"):
            name, equals, _ = pair.partition("=")
            if equals and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
                pair = f"{name}=[redacted]"
            pairs.append(pair)
        target = f"{path}?{'&'.join(pairs)}"
    return redact(target)


class AccessLogSecrets(logging.Filter):
    """uvicorn's access log writes each request's path with its query string: a token sent as
    `?token=` (feed readers do) or the upload form's `csrf_token` would be kept in the log in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_request_target(args[2]), args[3], args[4])
        return True


def logging_config(level: str, log_format: str = "plain") -> dict[str, Any]:
    """uvicorn's logging, with the service's own records (and asyncio's) through the root logger in one
    format, repeats held back everywhere and secrets kept out of the access log; every record carries
    the id of the request it was written for."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "repeats": {"()": "cfl_graph.doors.web.serving.RepeatedRecords"},
        "secrets": {"()": "cfl_graph.doors.web.serving.AccessLogSecrets"},
        "request_id": {"()": "cfl_graph.observability.RequestIdFilter"},
    }
    config["formatters"]["plain"] = {"()": "cfl_graph.observability.PlainLines"}
    config["formatters"]["json"] = {"()": "cfl_graph.observability.JsonLines"}
    config["handlers"]["default"]["filters"] = ["request_id", "repeats"]
    # The access log is the record of requests answered, each its own line: only redacted, never thinned.
    config["handlers"]["access"]["filters"] = ["secrets"]
    config["handlers"]["root"] = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "plain",
        "filters": ["request_id", "repeats"],
    }
    if log_format == "json":
        for handler in ("default", "access", "root"):
            config["handlers"][handler]["formatter"] = "json"
    config["root"] = {"handlers": ["root"], "level": level.upper()}
    return config


def prepare_metrics(settings: Settings, workers: int) -> Settings:
    """Several workers write their metrics to files for each other (prometheus-client's multiprocess
    mode): a folder the operator named (PROMETHEUS_MULTIPROC_DIR), emptied of an earlier run's files, or
    a new one, which the workers find in their environment. One worker keeps them in memory."""
    if workers == 1 and settings.metrics_dir is None:
        return settings
    folder = settings.metrics_dir
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="cfl-metrics-"))
    else:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)  # read by prometheus-client in each worker
    return replace(settings, metrics_dir=folder)


# --- the command -----------------------------------------------------------------------------------------


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The limits from the settings, the cap kept low enough that the process never runs out of
    descriptors: admitted connections, refused ones still draining, a backlog's worth accepted at once
    and the worker's own files must fit its limit (raised to the hard limit first, if that helps)."""
    overhead = FD_RESERVE + MAX_LINGERING + BURSTS_IN_FLIGHT * BACKLOG
    wanted = settings.max_connections + overhead
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    cap = settings.max_connections
    if soft != resource.RLIM_INFINITY and soft - overhead < cap:
        cap = max(16, soft - overhead)
        log.warning(
            "CFL_MAX_CONNECTIONS=%d is more than this process may open (%d descriptors); %d per worker",
            settings.max_connections,
            soft,
            cap,
        )
    return ConnectionLimits(
        max_connections=cap, header_timeout=settings.header_timeout, body_timeout=settings.body_timeout
    )


def serve(app: Any, settings: Settings, *, host: str, port: int, workers: int, log_level: str) -> bool:
    """Run uvicorn with the guarded protocol and the logging above; False if it could not start."""

    config = ServeConfig(
        app,
        limits=connection_limits(settings),
        factory=isinstance(app, str),
        host=host,
        port=port,
        workers=workers,
        http=GuardedH11Protocol,
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        log_config=logging_config(log_level, settings.log_format),
        log_level=log_level,
        access_log=settings.log_format != "json",
    )
    server = uvicorn.Server(config)
    if workers > 1:
        sockets = worker_sockets(host, port, workers, BACKLOG)
        if sockets is None:  # no SO_REUSEPORT here: every worker accepts from one shared socket
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            log.info("serving on http://%s:%d with one listening socket per worker", host, port)
            BalancedMultiprocess(config, sockets=sockets).run()
        return True
    server.run()
    return server.started


def worker_sockets(host: str, port: int, workers: int, backlog: int) -> list[socket.socket] | None:
    """One listening socket per worker on the same address (SO_REUSEPORT), bound and listening from the
    supervisor, which keeps them open while workers come and go: the kernel spreads new connections evenly
    over the sockets, so over the workers, a worker still starting finding its share waiting in its
    backlog. (Had each worker begun listening itself, every connection made before the last worker was up
    went to those already listening: a test saw 24 of 24 on one worker.) With one shared socket, the
    worker that wakes first accepts every connection waiting (asyncio accepts up to the backlog at once),
    and keep-alive clients stay with it: two workers were seen using one core between them. None where
    the platform has no SO_REUSEPORT."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the rest join the port the first was given
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        raise SystemExit(STARTUP_FAILURE) from None
    return sockets


class BalancedMultiprocess(Multiprocess):
    """uvicorn's supervisor, each worker on a listening socket of its own (`worker_sockets`). Worker `i`
    is started, restarted when it dies and replaced on SIGHUP on socket `i` alone, by uvicorn's own code
    run for that worker with that socket, so no socket is ever left without a worker to accept from it.
    Changing the number of workers by signal (TTIN, TTOU) is refused: a worker removed would leave its
    socket's connections to wait for no one."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.own_sockets = sockets

    def init_processes(self) -> None:
        for index in range(self.processes_num):
            process = Process(self.config, [self.own_sockets[index]])
            process.start()
            self.processes.append(process)

    def keep_subprocess_alive(self) -> None:
        self._each_worker(super().keep_subprocess_alive)

    def restart_all(self) -> None:
        self._each_worker(super().restart_all)

    def _each_worker(self, step: Callable[[], None]) -> None:
        """uvicorn's `step` for each worker in turn, as if it were the only one, on its own socket."""
        processes = self.processes
        try:
            for index, process in enumerate(processes):
                if self.should_exit.is_set():
                    return
                self.processes, self.sockets = [process], [self.own_sockets[index]]
                step()
                processes[index] = self.processes[0]
        finally:
            self.processes, self.sockets = processes, self.own_sockets

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: the number of workers is set by --workers (one socket each)")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: the number of workers is set by --workers (one socket each)")
