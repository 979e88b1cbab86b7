"""SQLite connections: one writer thread, one reader on the event loop.

SQLite allows one writer at a time per file, across all processes. Each
process funnels its writes through a single thread (so its own writers never
fight over the lock) and begins every write with `BEGIN IMMEDIATE`, which
takes the file's write lock up front: a read-then-update inside it is atomic
against every other process. Reads use WAL snapshots and never wait for the
writer, so they run directly on the event loop: a primary-key lookup costs
microseconds, less than a hop to a thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from genai_jobs.domain import StoreUnavailable

T = TypeVar("T")

# How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 10_000


@dataclass(slots=True)
class WriteTx:
    """What a write function sees: the connection, the commit's change number
    and clock, and the set of jobs it changed (to notify after commit)."""

    conn: sqlite3.Connection
    seq: int
    now: float
    changed: set[UUID] = field(default_factory=set)
    work_available: bool = False


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode survives process crashes; FULL also survives power
    # loss, which is what a 202 promises.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SQLiteDatabase:
    """The two connections of one process and the thread that owns writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreUnavailable("the SQLite store is not open")
        return self._reader

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read on this process's reader connection."""
        try:
            return self.reader.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # e.g. not migrated, unreadable file
            raise StoreUnavailable(f"SQLite store cannot be read: {exc}") from exc

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        try:
            self._writer = await self._in_writer_thread(lambda: connect(self.path))
            self._reader = connect(self.path)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._executor is None:
            return
        writer, self._writer = self._writer, None
        if writer is not None:
            await self._in_writer_thread(writer.close)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def write(self, work: Callable[[WriteTx], T], *, bump: bool = True) -> tuple[T, WriteTx]:
        """Run `work` in one IMMEDIATE transaction on the writer thread.

        With `bump`, the commit takes the next change number, which the
        other processes' change watchers see.
        """
        return await self._in_writer_thread(lambda: self._transaction(work, bump))

    def _transaction(self, work: Callable[[WriteTx], T], bump: bool) -> tuple[T, WriteTx]:
        conn = self._writer
        if conn is None:
            raise StoreUnavailable("the SQLite store is not open")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store is busy or unreadable: {exc}") from exc
        try:
            return self._in_transaction(conn, work, bump)
        except sqlite3.OperationalError as exc:  # e.g. not migrated, disk full
            raise StoreUnavailable(f"SQLite store cannot be written: {exc}") from exc

    def _in_transaction(
        self, conn: sqlite3.Connection, work: Callable[[WriteTx], T], bump: bool
    ) -> tuple[T, WriteTx]:
        try:
            seq = 0
            if bump:
                row = conn.execute(
                    "UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq"
                ).fetchone()
                seq = int(row[0])
            tx = WriteTx(conn=conn, seq=seq, now=time.time())
            result = work(tx)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result, tx

    async def _in_writer_thread(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("the SQLite store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
