"""In-process fan-out of job changes to the coroutines waiting on them.

Stores publish here after every committed change they make, and again for
changes they learn of from other processes (SQLite: a poll of the file's
change counter; PostgreSQL: LISTEN/NOTIFY). Long-polls wait on one job;
idle workers wait for any job to become runnable.

A change that only moves a running job's progress (its fraction and message)
is published as such when the store can tell; a waiter that shows neither
(the status route's long-poll, a worker watching for abort requests) is not
woken by it. A thousand status long-polls on jobs that report progress every
second would otherwise all wake, re-read and go back to sleep every second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from uuid import UUID


class ChangeFeed:
    def __init__(self) -> None:
        # Per job: each waiter's event, and whether a change of progress alone wakes it.
        self._job_waiters: defaultdict[UUID, dict[asyncio.Event, bool]] = defaultdict(dict)
        self._work_waiters: set[asyncio.Event] = set()
        self._tick = 0

    @property
    def tick(self) -> int:
        """Counts every change published: a read begun at tick N has seen them all."""
        return self._tick

    @property
    def job_waiter_count(self) -> int:
        return sum(len(waiters) for waiters in self._job_waiters.values())

    def job_changed(self, job_id: UUID, progress_only: bool = False) -> None:
        """`progress_only`: the change moved the job's progress and nothing else."""
        self._tick += 1
        for event, wants_progress in self._job_waiters.get(job_id, {}).items():
            if wants_progress or not progress_only:
                event.set()

    def work_available(self) -> None:
        for event in self._work_waiters:
            event.set()

    def wake_all(self) -> None:
        """Wake every waiter to look again (after notifications may have been lost)."""
        self._tick += 1
        for waiters in self._job_waiters.values():
            for event in waiters:
                event.set()
        self.work_available()

    @contextlib.contextmanager
    def watch_job(self, job_id: UUID, progress: bool = True) -> Iterator[asyncio.Event]:
        """An event set on every change of `job_id` while the block runs (with
        `progress` False, not on changes of its progress alone).

        Watch first, then read the job: a change between the read and the
        wait is then never missed.
        """
        event = asyncio.Event()
        self._job_waiters[job_id][event] = progress
        try:
            yield event
        finally:
            waiters = self._job_waiters[job_id]
            waiters.pop(event, None)
            if not waiters:
                del self._job_waiters[job_id]

    async def wait_for_job(self, job_id: UUID, timeout: float) -> bool:
        """Wait until `job_id` changes or `timeout` seconds pass; True if it changed."""
        with self.watch_job(job_id) as changed:
            return await wait_event(changed, timeout)

    def subscribe_work(self, event: asyncio.Event) -> None:
        """Have `event` set whenever a job may have become runnable."""
        self._work_waiters.add(event)

    def unsubscribe_work(self, event: asyncio.Event) -> None:
        self._work_waiters.discard(event)

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait until a job may have become runnable, or `timeout` seconds pass."""
        event = asyncio.Event()
        self._work_waiters.add(event)
        try:
            return await wait_event(event, timeout)
        finally:
            self._work_waiters.discard(event)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True if it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
