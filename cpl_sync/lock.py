"""One CPL sync at a time across processes: a PostgreSQL advisory lock, or a file lock beside SQLite.

Both are released by the operating system or the server when the holding process dies, so a killed
sync never leaves the lock held.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cfl_graph.database import sqlite_path

# An arbitrary, fixed 64-bit key: "CFLSYNC" in ASCII.
ADVISORY_KEY = 0x43464C53594E43
POLL_SECONDS = 0.2


class SyncLockBusy(Exception):
    """Another process is synchronising the CPL."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"another CPL sync is running (waited {waited:.0f} s for it to finish)")
        self.waited = waited


_in_process = asyncio.Lock()


async def _poll(try_once: Callable[[], Awaitable[bool]], wait: float) -> None:
    start = time.monotonic()
    while True:
        if await try_once():
            return
        waited = time.monotonic() - start
        if waited >= wait:
            raise SyncLockBusy(waited)
        await asyncio.sleep(POLL_SECONDS)


@contextlib.asynccontextmanager
async def sync_lock(engine: AsyncEngine, *, wait: float = 0.0) -> AsyncIterator[None]:
    """Hold the CPL sync lock; wait up to `wait` seconds for it, else raise `SyncLockBusy`."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:

            async def try_pg() -> bool:
                result = await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY})
                await conn.commit()
                return bool(result.scalar_one())

            await _poll(try_pg, wait)
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                await conn.commit()
        return

    path = sqlite_path(engine.url.render_as_string())
    if path is None:  # in-memory SQLite lives in one process
        if _in_process.locked() and wait == 0:
            raise SyncLockBusy(0)
        try:
            await asyncio.wait_for(_in_process.acquire(), wait or None)
        except TimeoutError:
            raise SyncLockBusy(wait) from None
        try:
            yield
        finally:
            _in_process.release()
        return

    lock_path = Path(f"{path}.sync-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:

        async def try_file() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        await _poll(try_file, wait)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
