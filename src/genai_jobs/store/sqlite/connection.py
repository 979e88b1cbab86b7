"""SQLite connections: one writer thread with group commit, one reader on the event loop.

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
import contextlib
import os
import queue
import sqlite3
import sys
import threading
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
# How much of the file each connection maps into memory (address space, not RAM).
MMAP_BYTES = 1 << 30
# Each connection's page cache, in KiB (SQLite's default is 2 MiB).
PAGE_CACHE_KIB = 16 * 1024
# Most write requests committed together: keeps one transaction's lock short.
MAX_GROUP_COMMIT = 256
# Threads (each with its own connection) for reads too big for the event loop.
BIG_READ_THREADS = 2
# How much lower the big reads' threads run than the event loop (a nice increment):
# on two cores a page query took one core, and status polls waited for the other.
BIG_READ_NICENESS = 10


@dataclass(slots=True)
class WriteTx:
    """What a write function sees: the connection, the commit's change number
    and clock, and the set of jobs it changed (to notify after commit)."""

    conn: sqlite3.Connection
    seq: int
    now: float
    changed: set[UUID] = field(default_factory=set)
    # Jobs whose progress alone this transaction moved (see store/changes.py).
    progressed: set[UUID] = field(default_factory=set)
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
    # Reads straight from the mapped file instead of through a small page cache:
    # status lookups stay flat as the file grows to millions of jobs.
    conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
    return conn


@dataclass(slots=True)
class _WriteRequest:
    work: Callable[[WriteTx], Any]
    bump: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[tuple[Any, WriteTx]]


_STOP = object()


class SQLiteDatabase:
    """The two connections of one process and the thread that owns writes.

    Writes are queued to the writer thread, which runs every request waiting
    at that moment in ONE transaction (group commit), each inside its own
    savepoint so that one failing request leaves the others intact. One
    fsync then serves many workers and clients: under load the cost of
    durability is shared, and a lone write waits for nobody.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[_WriteRequest | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # Change sequence numbers of this process's own commits, recorded by the writer
        # thread before each COMMIT: the commit watcher, woken by that very commit, may
        # run before the writing coroutine learns it is done, and must not take the
        # change for another process's (it would not know what the change was).
        self._own_seqs: set[int] = set()
        self._own_lock = threading.Lock()
        # When (time.monotonic()) the writer thread's open transaction took the write
        # lock; None between transactions. Set and cleared by that thread alone, read
        # by the commit watcher (store/sqlite/commits.py).
        self.write_began: float | None = None
        # Big reads (pages of up to 1,000 jobs, ~45 ms) run here on connections of their
        # own, so that the event loop answers status polls meanwhile.
        self._big_reads: ThreadPoolExecutor | None = None
        self._big_readers = threading.local()
        self._big_reader_conns: list[sqlite3.Connection] = []

    def take_own_seqs(self, up_to: int) -> set[int]:
        """This process's commits with a sequence number up to `up_to`, forgotten once
        taken (the watcher has seen everything up to there)."""
        with self._own_lock:
            taken = {seq for seq in self._own_seqs if seq <= up_to}
            self._own_seqs -= taken
        return taken

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

    async def read_off_loop(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on a reader connection of a thread off the event loop."""
        if self._big_reads is None:
            raise StoreUnavailable("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._big_reads, self._on_big_reader, work)

    def _on_big_reader(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._big_readers, "conn", None)
        if conn is None:
            conn = self._big_readers.conn = connect(self.path)
            with self._own_lock:
                self._big_reader_conns.append(conn)
        try:
            return work(conn)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store cannot be read: {exc}") from exc

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = connect(self.path)
            self._reader = connect(self.path)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._thread = threading.Thread(target=self._write_loop, name="sqlite-writer",
                                        daemon=True)
        self._thread.start()
        self._big_reads = ThreadPoolExecutor(BIG_READ_THREADS, thread_name_prefix="sqlite-read",
                                             initializer=_lower_this_threads_priority)

    async def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._big_reads is not None:
            await asyncio.to_thread(self._big_reads.shutdown)
            self._big_reads = None
        for conn in (self._writer, self._reader, *self._big_reader_conns):
            if conn is not None:
                conn.close()
        self._writer = self._reader = None

    async def write(self, work: Callable[[WriteTx], T], *, bump: bool = True) -> tuple[T, WriteTx]:
        """Run `work` on the writer thread inside a committed IMMEDIATE transaction.

        With `bump`, the commit takes the next change number, which the
        other processes' change watchers see.
        """
        if self._thread is None:
            raise StoreUnavailable("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, WriteTx]] = loop.create_future()
        self._queue.put(_WriteRequest(work, bump, loop, future))
        result, tx = await future
        return result, tx

    # -- the writer thread ----------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _WriteRequest)
            if self._commit_batch(first):
                return

    def _commit_batch(self, first: _WriteRequest) -> bool:
        """Commit `first` together with every request waiting once the write lock is
        held; True when a stop request came with them.

        The batch is taken after BEGIN IMMEDIATE, not before: while another process
        holds the lock, this process's requests pile up (a worker's next claim
        beside its last outcome), and all of them share the one commit.
        """
        conn = self._writer
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            batch, stop = self._waiting(first)
            _fail_all(batch, StoreUnavailable(f"SQLite store is busy or unreadable: {exc}"))
            return stop
        self.write_began = time.monotonic()
        batch, stop = self._waiting(first)
        seq = 0
        try:
            seq, outcomes = self._run_all(conn, batch)
            self._own(seq, True)  # before COMMIT: see `_own_seqs`
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # the commit itself failed: nothing was written
            self._own(seq, False)  # still under the write lock: nobody else has it yet
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            _fail_all(batch, StoreUnavailable(f"SQLite store cannot be written: {exc}"))
            return stop
        finally:
            self.write_began = None
        for request, outcome in zip(batch, outcomes, strict=True):
            _settle(request, outcome)
        return stop

    def _own(self, seq: int, committing: bool) -> None:
        if seq:
            with self._own_lock:
                if committing:
                    self._own_seqs.add(seq)
                else:
                    self._own_seqs.discard(seq)

    def _waiting(self, first: _WriteRequest) -> tuple[list[_WriteRequest], bool]:
        """`first` and the requests already waiting (up to a batch); whether a stop
        request was among them."""
        batch = [first]
        while len(batch) < MAX_GROUP_COMMIT:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
            if item is _STOP:
                return batch, True
            assert isinstance(item, _WriteRequest)
            batch.append(item)
        return batch, False

    def _run_all(
        self, conn: sqlite3.Connection, batch: list[_WriteRequest]
    ) -> tuple[int, list[tuple[Any, WriteTx] | BaseException]]:
        """The batch's change sequence number (0: none), and each request's outcome."""
        seq = _next_seq(conn) if any(request.bump for request in batch) else 0
        outcomes: list[tuple[Any, WriteTx] | BaseException] = []
        for request in batch:
            conn.execute("SAVEPOINT request")
            tx = WriteTx(conn=conn, seq=seq if request.bump else 0, now=time.time())
            try:
                outcomes.append((request.work(tx), tx))
            except Exception as exc:  # this request's own failure: undo only its part
                conn.execute("ROLLBACK TO request")
                outcomes.append(_translate(exc))
            conn.execute("RELEASE request")
        return seq, outcomes


def _next_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq").fetchone()
    return int(row[0])


def _translate(exc: Exception) -> BaseException:
    if isinstance(exc, sqlite3.OperationalError):  # e.g. not migrated, disk full
        return StoreUnavailable(f"SQLite store cannot be written: {exc}")
    return exc


def _settle(request: _WriteRequest, outcome: tuple[Any, WriteTx] | BaseException) -> None:
    def deliver() -> None:
        if request.future.done():  # the caller was cancelled meanwhile
            return
        if isinstance(outcome, BaseException):
            request.future.set_exception(outcome)
        else:
            request.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the caller's loop has closed
        request.loop.call_soon_threadsafe(deliver)


def _fail_all(batch: list[_WriteRequest], error: StoreUnavailable) -> None:
    for request in batch:
        _settle(request, error)


def _lower_this_threads_priority() -> None:
    """Linux gives each thread its own nice value (elsewhere this would lower the
    whole process's, so it is left alone there)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, 0) + BIG_READ_NICENESS)
