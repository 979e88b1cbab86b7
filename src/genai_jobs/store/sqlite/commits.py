"""When to look for commits that other processes made to the SQLite file.

Every commit writes the file's write-ahead log (`<file>-wal`). On Linux an
inotify watch on the folder wakes this process as soon as another process writes
it: an idle process does no work at all, and a waiter hears of a commit within a
fraction of a millisecond. Where inotify is missing (another OS, no `asyncinotify`,
no watch left), the process looks every POLL_SECONDS instead. Either way:

- it also looks every SAFETY_SECONDS, for an event that never comes (a file
  system that sends none, such as a network share, or an overflowed queue);
- once looks find commits more than BURST_LOOKS times within BURST_SECONDS (under
  load: this process's own commits write the same log too), each look waits until
  GATHER_SECONDS have passed since the last: commits are then taken in batches, as
  often as the 10 ms polling took them, rather than one look, and one wake-up of
  idle workers, per commit; a commit now and then is still heard at once;
- the same once the log's events wake this process EMPTY_WAKES times within
  BURST_SECONDS for nothing: a large transaction (a 160 MB upload) writes the log for
  seconds before it commits, and woken by each of its writes the event loop spent half
  its time looking (bench/hostile.py uploads); a run of events left unread meanwhile is
  merged into one by the kernel;
- while this process has held the file's write lock for LONG_WRITE_SECONDS (a
  large upload stored for a second or more), no other process can commit, and the
  log's events are this process's own writes: the watcher looks once, then waits
  for that transaction to end (at most SAFETY_SECONDS) and looks again. With ten
  160 MB uploads the looks woken by those writes were ~30 % of the event loop's time;
- a commit becomes visible when the writer updates the log's index in shared
  memory, after its writes (and their fsync), and that update makes no event; and
  one wake-up drains the events of every commit written so far, visible or not.
  So every wake-up is followed by a few more looks, RECHECK_SECONDS apart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("genai_jobs.store.sqlite")

POLL_SECONDS = 0.01
SAFETY_SECONDS = 1.0
GATHER_SECONDS = 0.01
BURST_LOOKS = 50
EMPTY_WAKES = 20
BURST_SECONDS = 0.1
LONG_WRITE_SECONDS = 0.05
OWN_WRITE_POLL_SECONDS = 0.005
RECHECK_SECONDS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256)
# Events are read and dropped in reads of this size (hundreds of events each), at most
# this many reads per look.
DRAIN_READ_BYTES = 1 << 16
MAX_DRAIN_READS = 16


class CommitSignals:
    """`await next_look()` returns when a look for other processes' commits is due."""

    def __init__(self, inotify_fd: int | None, log_name: str,
                 own_write: Callable[[], float | None] = lambda: None) -> None:
        self._fd = inotify_fd  # read here in bulk, no event parsed
        # When this process's open write transaction began (time.monotonic()), or None.
        self._own_write = own_write
        self._looked_in_write: float | None = None  # the long write already looked in
        # An event names its file NUL-terminated; the overflow event is wd -1, mask 0x4000.
        self._log_event = log_name.encode() + b"\x00"
        self._rechecks: list[float] = []
        self._last_look = 0.0
        # When recent looks found commits (loop time), the last BURST_LOOKS of them; and
        # when the log's events woke this process to find none, the last EMPTY_WAKES.
        self._finds: collections.deque[float] = collections.deque(maxlen=BURST_LOOKS)
        self._empty_wakes: collections.deque[float] = collections.deque(maxlen=EMPTY_WAKES)
        self._woken = False  # the look now due follows an event

    @property
    def watching(self) -> bool:
        """True when woken by the file system, False when polling."""
        return self._fd is not None

    async def next_look(self) -> None:
        if self._fd is None:
            await asyncio.sleep(POLL_SECONDS)
            return
        loop = asyncio.get_running_loop()
        if await self._waited_for_own_write():
            return
        if self._in_a_burst(loop.time()):
            await asyncio.sleep(max(0.0, self._last_look + GATHER_SECONDS - loop.time()))
        # An event, or else the next of the looks owed to the last one.
        wait = self._rechecks.pop(0) if self._rechecks else SAFETY_SECONDS
        deadline = loop.time() + wait
        woken = self._drained_the_log(self._fd)
        while not woken and (left := deadline - loop.time()) > 0:
            if not await _readable(self._fd, left):
                break
            woken = self._drained_the_log(self._fd)
        if woken:
            self._rechecks = list(RECHECK_SECONDS)
            self._woken = True
        self._last_look = loop.time()

    async def _waited_for_own_write(self) -> bool:
        """True once a long write of this process has ended (or was first seen, to look
        once for what others committed before it took the lock): a look is due."""
        began = self._own_write()
        if began is None or time.monotonic() - began < LONG_WRITE_SECONDS:
            return False
        if self._looked_in_write != began:
            self._looked_in_write = began
            return True
        # Polled: an event the writer thread set would cost every short transaction a
        # call into the loop, for the sake of the rare long one.
        deadline = time.monotonic() + SAFETY_SECONDS
        while self._own_write() == began and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(OWN_WRITE_POLL_SECONDS)
        assert self._fd is not None
        self._drained_the_log(self._fd)  # its own writes' events
        # Its commit becomes visible once the log's index is updated, which wakes no one.
        self._rechecks = list(RECHECK_SECONDS)
        self._last_look = asyncio.get_running_loop().time()
        return True

    def looked(self, found_commits: bool) -> None:
        """Say what the look that `next_look` allowed found."""
        now = asyncio.get_running_loop().time()
        if found_commits:
            self._finds.append(now)
        elif self._woken:
            self._empty_wakes.append(now)
        self._woken = False

    def _in_a_burst(self, now: float) -> bool:
        return any(len(times) == times.maxlen and now - times[0] < BURST_SECONDS
                   for times in (self._finds, self._empty_wakes))

    def _drained_the_log(self, fd: int) -> bool:
        """Read every waiting event (a few reads of many events each, nothing parsed):
        whether one was the log's, or the queue overflowed, or more are left."""
        concerned = False
        for _ in range(MAX_DRAIN_READS):
            try:
                events = os.read(fd, DRAIN_READ_BYTES)
            except BlockingIOError:
                return concerned
            concerned = concerned or self._log_event in events or _OVERFLOW in events
        return True  # still more: look, rather than read on


async def _readable(fd: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        async with asyncio.timeout(timeout):
            await ready.wait()
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


# An overflow event's head: watch -1, mask IN_Q_OVERFLOW, in the machine's byte order; a
# name that happens to hold these bytes costs one extra look.
_OVERFLOW = struct.pack("=iI", -1, 0x4000)


@contextlib.asynccontextmanager
async def commit_signals(database: Path, own_write: Callable[[], float | None] = lambda: None,
                         ) -> AsyncIterator[CommitSignals]:
    """Signals for the database file at `database`, watched while the context lasts;
    `own_write` says when this process's open write transaction began, if one is open."""
    inotify = _watch(database)
    try:
        yield CommitSignals(None if inotify is None else inotify.fd, f"{database.name}-wal",
                            own_write)
    finally:
        if inotify is not None:
            inotify.close()


def _watch(database: Path) -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        from asyncinotify import Inotify, Mask
    except ImportError:
        return None
    inotify = Inotify()
    # Read here directly, never blocking (asyncinotify's NONBLOCK flag is O_CLOEXEC's value).
    os.set_blocking(inotify.fd, False)
    try:
        # The folder, not the log itself: the log is created, deleted and created
        # again as connections come and go, and a watch on a file dies with it.
        inotify.add_watch(database.parent, Mask.MODIFY | Mask.CREATE | Mask.MOVED_TO)
    except OSError as exc:  # e.g. out of inotify watches
        inotify.close()
        log.warning("cannot watch %s for commits (%s); looking every %g s instead",
                    database.parent, exc, POLL_SECONDS)
        return None
    return inotify
