"""Service settings, read from the environment in exactly one place.

Nothing else in the code base reads `os.environ`; the composition root (`cfl_graph.doors.web.app`) and the
CLI build a `Settings` and pass it down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""

    def __init__(self, name: str, value: str, reason: str) -> None:
        super().__init__(f"{name}={value!r}: {reason}")
        self.name = name
        self.value = value
        self.reason = reason


# Redis answers in well under a millisecond; a worker that waits longer goes on without it
# (`CFL_REDIS_TIMEOUT`, `cfl_graph.shared_state`).
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./var/cfl.sqlite3"
    blob_dir: Path = Path("./var/blobs")
    work_dir: Path = Path("./var/work")
    cpl_source: str | None = None
    cpl_sync_interval: int = 0
    cpl_max_bytes: int = 200 * 1024 * 1024
    cpl_max_rows: int = 2_000_000
    cpl_fetch_attempts: int = 4
    cpl_fetch_timeout: float = 300.0
    max_request_bytes: int = 1024 * 1024
    # Firmware uploads are exempt from max_request_bytes and bounded by this instead.
    max_image_bytes: int = 512 * 1024 * 1024
    # None: the local folder `blob_dir`; else an S3 bucket (`s3://bucket[/prefix]`).
    blob_store: str | None = None
    s3_endpoint_url: str | None = None
    # The library's Ed25519 key for the signed catalogue; None: `work_dir/catalogue-signing-key.pem`.
    catalogue_key_file: Path | None = None
    rate_limit_per_minute: int = 600
    graphql_introspection: bool = True
    # How queries execute (cfl_graph/doors/graph/plans.py): `on` compiled plans, the reference executor
    # where a plan cannot answer; `off` the reference executor alone; `check` both, compared (tests).
    graphql_plans: str = "on"
    # Each worker's memory of GraphQL answers (cfl_graph/doors/web/response_cache.py); 0 turns it off.
    response_cache_mb: int = 128
    # None: INFO for `serve`, WARNING for one-shot commands, whose own output says what happened.
    log_level: str | None = None
    # Where clients reach the service (`https://cfl.example.org`, or with a path prefix), for the
    # absolute links it writes (feeds); None: links are written relative to the site, never from the
    # request's Host header.
    public_base_url: str | None = None
    # `serve`: open connections per worker (one more is answered 503), seconds a request's header may
    # take to arrive, and seconds a request body may pause (cfl_graph/doors/web/serving.py).
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # Origins (`https://dashboard.example.org`) whose pages may call `/graphql` and the downloads with a
    # bearer token (cfl_graph/doors/web/cors.py); empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    # Several nodes (issue 18): the Redis holding the rate limits, the answers and the persisted queries
    # they share (cfl_graph/shared_state.py), and the prefix of every key written there; None: each
    # worker keeps its own, in memory, as a single node does.
    redis_url: str | None = None
    redis_prefix: str = "cfl:"
    # Seconds a worker waits for Redis (to connect, or for one answer) before it goes on without it.
    redis_timeout: float = REDIS_TIMEOUT_SECONDS
    # The bearer token Prometheus presents at /metrics; None: /metrics is not served.
    metrics_token: str | None = None
    # Where the workers of one `serve` write their metrics for each other (prometheus-client's
    # multiprocess mode, PROMETHEUS_MULTIPROC_DIR); None: one process, metrics in memory.
    metrics_dir: Path | None = None
    # `plain` (one line of text per record) or `json` (one JSON object per record).
    log_format: str = "plain"
    # Seconds `serve` lets in-flight requests and uploads finish after SIGTERM before it stops anyway.
    shutdown_timeout: float = 30.0

    @property
    def signing_key_file(self) -> Path:
        return self.catalogue_key_file or self.work_dir / "catalogue-signing-key.pem"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _positive_int(name: str, raw: str, *, allow_zero: bool = False) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, raw, "not a whole number") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(name, raw, "must be positive" if not allow_zero else "must be 0 or more")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, raw, "not a number") from None
    if value <= 0:
        raise SettingsError(name, raw, "must be positive")
    return value


def _redis_timeout(name: str, raw: str) -> float:
    value = _positive_float(name, raw)
    if not 0.01 <= value <= 60:
        raise SettingsError(name, raw, "expected seconds from 0.01 to 60")
    return value


def _database_url(name: str, raw: str) -> str:
    if raw.startswith("sqlite://") and not raw.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + raw.removeprefix("sqlite://")
    if raw.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + raw.split("://", 1)[1]
    if raw.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return raw
    raise SettingsError(name, raw, "expected a sqlite:// or postgresql:// URL")


def _interval(name: str, raw: str) -> int:
    """Seconds, or a number with an s/m/h/d suffix; 0 turns the scheduled sync off."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = raw.strip().lower()
    factor = 1
    if text and text[-1] in units:
        factor = units[text[-1]]
        text = text[:-1]
    return _positive_int(name, text, allow_zero=True) * factor


def _one_of(name: str, raw: str, choices: tuple[str, ...]) -> str:
    text = raw.strip().lower()
    if text not in choices:
        raise SettingsError(name, raw, f"expected one of {', '.join(choices)}")
    return text


def _flag(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, raw, "expected true or false")


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(name, raw, "expected DEBUG, INFO, WARNING or ERROR")
    return level


def _s3_url(name: str, raw: str) -> str | None:
    value = raw.strip()
    if value in ("", "local"):
        return None
    bucket = value.removeprefix("s3://").split("/", 1)[0]
    if not value.startswith("s3://") or not bucket:
        raise SettingsError(name, raw, "expected `local` or `s3://bucket[/prefix]`")
    return value.rstrip("/")


def _http_url(name: str, raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("http://", "https://")):
        raise SettingsError(name, raw, "expected an http:// or https:// URL")
    return value


def _url_parts(name: str, raw: str, value: str, what: str) -> SplitResult:
    """`value`, part of `raw`, as an http(s) URL with a host and no query, fragment or credentials."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise SettingsError(name, raw, "not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(name, raw, "expected an http:// or https:// URL with a host")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise SettingsError(name, raw, f"{what} has no query (?) or fragment (#)")
    if parts.username is not None or parts.password is not None:
        raise SettingsError(name, raw, f"{what} carries no user name or password")
    if port == 0 or any(ch.isspace() or not ch.isprintable() for ch in value) or not value.isascii():
        raise SettingsError(name, raw, f"{what} is printable ASCII without spaces (percent-encode the rest)")
    return parts


def _public_base_url(name: str, raw: str) -> str:
    """An http(s) URL with a host and no query, fragment or credentials; kept without a trailing slash
    so that paths append to it."""
    value = raw.strip()
    _url_parts(name, raw, value, "a base URL")
    return value.rstrip("/")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origins(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated origins, each `scheme://host[:port]` and kept as a browser sends it in `Origin`
    (lower case, no default port); `*` is refused: the list names each dashboard that may call."""
    origins: list[str] = []
    for item in (piece.strip() for piece in raw.split(",")):
        if item in ("*", "null"):
            raise SettingsError(name, raw, f"{item!r} is no origin: name each, like https://dash.example.org")
        if not item:
            continue
        parts = _url_parts(name, raw, item, "an origin")
        if parts.path not in ("", "/"):
            raise SettingsError(name, raw, f"an origin is scheme://host[:port] alone, without {parts.path!r}")
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = "" if parts.port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{parts.port}"
        if (origin := f"{parts.scheme}://{host}{port}") not in origins:
            origins.append(origin)
    return tuple(origins)


def _redis_url(name: str, raw: str) -> str:
    """A redis://, rediss:// or unix:// URL; a refusal never repeats the password it may carry."""
    value = raw.strip()
    raw = re.sub(r"//[^/@]*@", "//[hidden]@", raw)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:
        raise SettingsError(name, raw, "not a URL") from None
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise SettingsError(name, raw, "expected redis://host[:port][/db], rediss://... or unix:///path")
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not (database.isascii() and database.isdigit()):
        raise SettingsError(name, raw, "the path of a redis:// URL is a database number (/0 to /15)")
    return value


def _redis_prefix(name: str, raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 64 or not value.isascii() or not value.isprintable() or " " in value:
        raise SettingsError(name, raw, "1 to 64 printable ASCII characters without spaces, like `cfl:`")
    return value


def _secret(name: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if len(value) < 16 or not value.isascii() or not value.isprintable() or " " in value:
        raise SettingsError(name, "[hidden]", "at least 16 printable ASCII characters without spaces")
    return value


def _log_format(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("plain", "json"):
        raise SettingsError(name, raw, "expected plain or json")
    return value


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `CFL_*` variables; unset variables keep the documented defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    if (raw := env.get("CFL_DATABASE_URL")) is not None:
        values["database_url"] = _database_url("CFL_DATABASE_URL", raw)
    if (raw := env.get("CFL_BLOB_DIR")) is not None:
        values["blob_dir"] = Path(raw)
    if (raw := env.get("CFL_WORK_DIR")) is not None:
        values["work_dir"] = Path(raw)
    if (raw := env.get("CFL_CPL_SOURCE")) is not None and raw.strip():
        values["cpl_source"] = raw.strip()
    if (raw := env.get("CFL_CPL_SYNC_INTERVAL")) is not None:
        values["cpl_sync_interval"] = _interval("CFL_CPL_SYNC_INTERVAL", raw)
    if (raw := env.get("CFL_CPL_MAX_BYTES")) is not None:
        values["cpl_max_bytes"] = _positive_int("CFL_CPL_MAX_BYTES", raw)
    if (raw := env.get("CFL_CPL_MAX_ROWS")) is not None:
        values["cpl_max_rows"] = _positive_int("CFL_CPL_MAX_ROWS", raw)
    if (raw := env.get("CFL_CPL_FETCH_ATTEMPTS")) is not None:
        values["cpl_fetch_attempts"] = _positive_int("CFL_CPL_FETCH_ATTEMPTS", raw)
    if (raw := env.get("CFL_CPL_FETCH_TIMEOUT")) is not None:
        values["cpl_fetch_timeout"] = _positive_float("CFL_CPL_FETCH_TIMEOUT", raw)
    if (raw := env.get("CFL_MAX_REQUEST_BYTES")) is not None:
        values["max_request_bytes"] = _positive_int("CFL_MAX_REQUEST_BYTES", raw)
    if (raw := env.get("CFL_MAX_IMAGE_BYTES")) is not None:
        values["max_image_bytes"] = _positive_int("CFL_MAX_IMAGE_BYTES", raw)
    if (raw := env.get("CFL_BLOB_STORE")) is not None:
        values["blob_store"] = _s3_url("CFL_BLOB_STORE", raw)
    if (raw := env.get("CFL_S3_ENDPOINT_URL")) is not None and raw.strip():
        values["s3_endpoint_url"] = _http_url("CFL_S3_ENDPOINT_URL", raw)
    if (raw := env.get("CFL_CATALOGUE_KEY_FILE")) is not None and raw.strip():
        values["catalogue_key_file"] = Path(raw.strip())
    if (raw := env.get("CFL_RATE_LIMIT_PER_MINUTE")) is not None:
        values["rate_limit_per_minute"] = _positive_int("CFL_RATE_LIMIT_PER_MINUTE", raw, allow_zero=True)
    if (raw := env.get("CFL_GRAPHQL_INTROSPECTION")) is not None:
        values["graphql_introspection"] = _flag("CFL_GRAPHQL_INTROSPECTION", raw)
    if (raw := env.get("CFL_GRAPHQL_PLANS")) is not None:
        values["graphql_plans"] = _one_of("CFL_GRAPHQL_PLANS", raw, ("on", "off", "check"))
    if (raw := env.get("CFL_RESPONSE_CACHE_MB")) is not None:
        values["response_cache_mb"] = _positive_int("CFL_RESPONSE_CACHE_MB", raw, allow_zero=True)
    if (raw := env.get("CFL_LOG_LEVEL")) is not None:
        values["log_level"] = _log_level("CFL_LOG_LEVEL", raw)
    if (raw := env.get("CFL_MAX_CONNECTIONS")) is not None:
        values["max_connections"] = _positive_int("CFL_MAX_CONNECTIONS", raw)
    if (raw := env.get("CFL_HEADER_TIMEOUT")) is not None:
        values["header_timeout"] = _positive_float("CFL_HEADER_TIMEOUT", raw)
    if (raw := env.get("CFL_BODY_TIMEOUT")) is not None:
        values["body_timeout"] = _positive_float("CFL_BODY_TIMEOUT", raw)
    if (raw := env.get("CFL_PUBLIC_BASE_URL")) is not None and raw.strip():
        values["public_base_url"] = _public_base_url("CFL_PUBLIC_BASE_URL", raw)
    if (raw := env.get("CFL_CORS_ORIGINS")) is not None:
        values["cors_origins"] = _origins("CFL_CORS_ORIGINS", raw)
    if (raw := env.get("CFL_REDIS_URL")) is not None and raw.strip():
        values["redis_url"] = _redis_url("CFL_REDIS_URL", raw)
    if (raw := env.get("CFL_REDIS_PREFIX")) is not None:
        values["redis_prefix"] = _redis_prefix("CFL_REDIS_PREFIX", raw)
    if (raw := env.get("CFL_REDIS_TIMEOUT")) is not None:
        values["redis_timeout"] = _redis_timeout("CFL_REDIS_TIMEOUT", raw)
    if (raw := env.get("CFL_METRICS_TOKEN")) is not None:
        values["metrics_token"] = _secret("CFL_METRICS_TOKEN", raw)
    if (raw := env.get("PROMETHEUS_MULTIPROC_DIR")) is not None and raw.strip():
        values["metrics_dir"] = Path(raw.strip())
    if (raw := env.get("CFL_LOG_FORMAT")) is not None:
        values["log_format"] = _log_format("CFL_LOG_FORMAT", raw)
    if (raw := env.get("CFL_SHUTDOWN_TIMEOUT")) is not None:
        values["shutdown_timeout"] = _positive_float("CFL_SHUTDOWN_TIMEOUT", raw)
    return Settings(**values)  # type: ignore[arg-type]
