"""Settings come from the environment in one place, with documented defaults and named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfl_graph.settings import Settings, SettingsError, from_env


def test_defaults_need_no_environment() -> None:
    settings = from_env({})
    assert settings == Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./var/cfl.sqlite3"
    assert settings.blob_dir == Path("var/blobs")
    assert settings.cpl_sync_interval == 0


def test_every_variable_is_read() -> None:
    settings = from_env(
        {
            "CFL_DATABASE_URL": "postgresql://postgres@db:5432/cfl",
            "CFL_BLOB_DIR": "/srv/blobs",
            "CFL_WORK_DIR": "/srv/work",
            "CFL_CPL_SOURCE": "https://example.invalid/cpl.xlsx",
            "CFL_CPL_SYNC_INTERVAL": "6h",
            "CFL_CPL_MAX_BYTES": "1000",
            "CFL_CPL_MAX_ROWS": "10",
            "CFL_CPL_FETCH_ATTEMPTS": "2",
            "CFL_CPL_FETCH_TIMEOUT": "12.5",
            "CFL_LOG_LEVEL": "debug",
            "CFL_MAX_REQUEST_BYTES": "2048",
            "CFL_RATE_LIMIT_PER_MINUTE": "0",
            "CFL_GRAPHQL_INTROSPECTION": "off",
            "CFL_MAX_CONNECTIONS": "250",
            "CFL_HEADER_TIMEOUT": "4.5",
            "CFL_BODY_TIMEOUT": "12",
            "CFL_PUBLIC_BASE_URL": "https://cfl.example.org/",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://postgres@db:5432/cfl"
    assert (settings.blob_dir, settings.work_dir) == (Path("/srv/blobs"), Path("/srv/work"))
    assert settings.cpl_source == "https://example.invalid/cpl.xlsx"
    assert settings.cpl_sync_interval == 6 * 3600
    assert (settings.cpl_max_bytes, settings.cpl_max_rows, settings.cpl_fetch_attempts) == (1000, 10, 2)
    assert (settings.cpl_fetch_timeout, settings.log_level) == (12.5, "DEBUG")
    assert (settings.max_request_bytes, settings.rate_limit_per_minute) == (2048, 0)
    assert settings.graphql_introspection is False
    assert (settings.max_connections, settings.header_timeout, settings.body_timeout) == (250, 4.5, 12.0)
    assert settings.public_base_url == "https://cfl.example.org"


@pytest.mark.parametrize(
    "variable,value,reason",
    [
        ("CFL_DATABASE_URL", "mysql://root@localhost/cfl", "expected a sqlite:// or postgresql:// URL"),
        ("CFL_CPL_SYNC_INTERVAL", "-5", "must be 0 or more"),
        ("CFL_CPL_SYNC_INTERVAL", "often", "not a whole number"),
        ("CFL_CPL_MAX_ROWS", "0", "must be positive"),
        ("CFL_CPL_FETCH_TIMEOUT", "fast", "not a number"),
        ("CFL_LOG_LEVEL", "LOUD", "expected DEBUG, INFO, WARNING or ERROR"),
        ("CFL_GRAPHQL_INTROSPECTION", "maybe", "expected true or false"),
        ("CFL_MAX_CONNECTIONS", "0", "must be positive"),
        ("CFL_HEADER_TIMEOUT", "-1", "must be positive"),
        ("CFL_BODY_TIMEOUT", "never", "not a number"),
    ],
)
def test_bad_values_name_the_variable_and_why(variable: str, value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env({variable: value})
    assert str(caught.value) == f"{variable}={value!r}: {reason}"


@pytest.mark.parametrize(
    "raw,kept",
    [
        ("https://cfl.example.org", "https://cfl.example.org"),
        ("https://cfl.example.org/", "https://cfl.example.org"),
        ("http://127.0.0.1:8000/cfl/", "http://127.0.0.1:8000/cfl"),
        ("  https://cfl.example.org/library  ", "https://cfl.example.org/library"),
    ],
)
def test_the_public_base_url_is_kept_without_a_trailing_slash(raw: str, kept: str) -> None:
    assert from_env({"CFL_PUBLIC_BASE_URL": raw}).public_base_url == kept
    assert from_env({"CFL_PUBLIC_BASE_URL": ""}).public_base_url is None
    assert from_env({}).public_base_url is None


@pytest.mark.parametrize(
    "raw",
    [
        "cfl.example.org",
        "ftp://cfl.example.org",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "https://cfl.example.org/?x=1",
        "https://cfl.example.org/#top",
        "https://cfl.example.org?",
        "https://user:secret@cfl.example.org",
        "https://cfl.example.org:99999",
        "https://cfl.example.org:0",
        "https://cfl.example.org/a b",
        "https://cfl.exämple.org",
        "https://cfl.example.org/\x00",
    ],
)
def test_a_bad_public_base_url_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        from_env({"CFL_PUBLIC_BASE_URL": raw})
    assert refused.value.name == "CFL_PUBLIC_BASE_URL"


def test_the_settings_of_several_machines_are_read() -> None:
    settings = from_env(
        {
            "CFL_REDIS_URL": "redis://:pw@redis.internal:6380/2",
            "CFL_REDIS_PREFIX": "cfl-prod:",
            "CFL_REDIS_TIMEOUT": "2.5",
            "CFL_METRICS_TOKEN": "scrape-me-0123456789",
            "PROMETHEUS_MULTIPROC_DIR": "/run/cfl-metrics",
            "CFL_LOG_FORMAT": "JSON",
            "CFL_SHUTDOWN_TIMEOUT": "45",
        }
    )
    assert settings.redis_url == "redis://:pw@redis.internal:6380/2"
    assert (settings.redis_prefix, settings.redis_timeout) == ("cfl-prod:", 2.5)
    assert settings.metrics_token == "scrape-me-0123456789"
    assert settings.metrics_dir == Path("/run/cfl-metrics")
    assert (settings.log_format, settings.shutdown_timeout) == ("json", 45.0)
    # Empty means unset: no Redis, no /metrics.
    empty = from_env({"CFL_REDIS_URL": " ", "CFL_METRICS_TOKEN": ""})
    assert (empty.redis_url, empty.metrics_token) == (None, None)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CFL_REDIS_URL", "http://redis:6379", "expected redis://"),
        ("CFL_REDIS_URL", "redis://:hunter2secret@redis:6379/db", "database number"),
        ("CFL_REDIS_URL", "redis://redis:99999", "not a URL"),
        ("CFL_REDIS_PREFIX", "", "printable ASCII"),
        ("CFL_REDIS_PREFIX", "a b", "printable ASCII"),
        ("CFL_REDIS_TIMEOUT", "0", "must be positive"),
        ("CFL_REDIS_TIMEOUT", "soon", "not a number"),
        ("CFL_REDIS_TIMEOUT", "600", "from 0.01 to 60"),
        ("CFL_METRICS_TOKEN", "short", "at least 16"),
        ("CFL_LOG_FORMAT", "yaml", "expected plain or json"),
        ("CFL_SHUTDOWN_TIMEOUT", "0", "must be positive"),
    ],
)
def test_bad_values_of_several_machines_are_refused(variable: str, value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as refused:
        from_env({variable: value})
    assert refused.value.name == variable and reason in str(refused.value)
    # A password in the Redis URL, or the metrics token, is never repeated in the refusal.
    assert "hunter2secret" not in str(refused.value)
    if variable == "CFL_METRICS_TOKEN":
        assert str(refused.value).startswith("CFL_METRICS_TOKEN='[hidden]'")
