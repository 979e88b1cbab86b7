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
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

log = logging.getLogger("genai_jobs.store.sqlite")

POLL_SECONDS = 0.01
SAFETY_SECONDS = 1.0
GATHER_SECONDS = 0.01
BURST_LOOKS = 50
BURST_SECONDS = 0.1
RECHECK_SECONDS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256)
# Events read and dropped at once after a wake-up; the rest wait for the next look.
MAX_DRAINED_EVENTS = 1000


class CommitSignals:
    """`await next_look()` returns when a look for other processes' commits is due."""

    def __init__(self, inotify: Any | None, log_name: str, overflow: int = 0) -> None:
        self._inotify = inotify
        self._log = Path(log_name)
        self._overflow = overflow  # the event mask of a queue that lost events
        self._rechecks: list[float] = []
        self._last_look = 0.0
        # When recent looks found commits (loop time), the last BURST_LOOKS of them.
        self._finds: collections.deque[float] = collections.deque(maxlen=BURST_LOOKS)

    @property
    def watching(self) -> bool:
        """True when woken by the file system, False when polling."""
        return self._inotify is not None

    async def next_look(self) -> None:
        if self._inotify is None:
            await asyncio.sleep(POLL_SECONDS)
            return
        loop = asyncio.get_running_loop()
        if self._in_a_burst(loop.time()):
            await asyncio.sleep(max(0.0, self._last_look + GATHER_SECONDS - loop.time()))
        # An event, or else the next of the looks owed to the last one.
        wait = self._rechecks.pop(0) if self._rechecks else SAFETY_SECONDS
        try:
            async with asyncio.timeout(wait):
                while not self._concerns_the_log(await self._inotify.get()):
                    pass  # another file in the folder: keep waiting (bounded by the timeout)
        except TimeoutError:
            pass
        else:
            for _ in range(MAX_DRAINED_EVENTS):  # one look covers every event so far
                if self._inotify.sync_get() is None:
                    break
            self._rechecks = list(RECHECK_SECONDS)
        self._last_look = loop.time()

    def looked(self, found_commits: bool) -> None:
        """Say what the look that `next_look` allowed found."""
        if found_commits:
            self._finds.append(asyncio.get_running_loop().time())

    def _in_a_burst(self, now: float) -> bool:
        return len(self._finds) == BURST_LOOKS and now - self._finds[0] < BURST_SECONDS

    def _concerns_the_log(self, event: Any) -> bool:
        return bool(event.name == self._log or event.mask & self._overflow)


@contextlib.asynccontextmanager
async def commit_signals(database: Path) -> AsyncIterator[CommitSignals]:
    """Signals for the database file at `database`, watched while the context lasts."""
    inotify = _watch(database)
    try:
        if inotify is None:
            yield CommitSignals(None, f"{database.name}-wal")
        else:
            from asyncinotify import Mask  # importable: _watch made the watch with it

            yield CommitSignals(inotify, f"{database.name}-wal", Mask.Q_OVERFLOW)
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
    inotify = Inotify(sync_timeout=0)  # sync_get() then never blocks
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
