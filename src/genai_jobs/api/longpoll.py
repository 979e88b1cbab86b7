"""`waitSeconds`: hold an answer until the job changes, woken by the change feed.

Two things keep many waiters cheap. A waiter is woken only by changes its
answer shows: the status route's long-poll is not woken by progress (store/
changes.py). And the waiters of one job share their reads of it: after a
change, the first to look reads the job and the others take that read, so a
hundred long-polls on one job cost one query per change, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import random
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from starlette.types import Receive

from genai_jobs import metrics
from genai_jobs.domain import Job, JobStatus
from genai_jobs.store import Store
from genai_jobs.store.changes import wait_event

# A waiter re-reads its job at least this often, notified or not.
RECHECK_SECONDS = 10.0
# Answers kept for sharing, one per job: the jobs being waited on (bounded all the same).
MAX_KEPT_BODIES = 4096
# Parts of a long-poll's (unwanted) body read while listening for the client leaving.
MAX_BODY_MESSAGES = 1000


@dataclass(frozen=True, slots=True)
class Answer:
    """What a long-poll's answer shows of a job: it is held while `fingerprint` is
    unchanged; `shows_progress` says whether a change of progress alone can alter it.
    (The fingerprint reads fields a JobStatus has too, for the status route's.)"""

    fingerprint: Callable[[Any], Hashable]
    shows_progress: bool

    def tag(self, job: Job | JobStatus) -> str:
        """The answer's ETag: equal for answers that show the same of the job. A client
        that sends it back in `If-None-Match` is answered at once if the job changed
        since, and held otherwise: no change between two polls goes unseen."""
        digest = hashlib.blake2b(repr(self.fingerprint(job)).encode(), digest_size=8)
        return f'"{digest.hexdigest()}"'


def seen_tag(if_none_match: str | None) -> str | None:
    """The ETag a client says it has seen (the first of `If-None-Match`, weak or not)."""
    if not if_none_match:
        return None
    first = if_none_match.split(",", 1)[0].strip()
    return first.removeprefix("W/") or None


# The status route: the seed's seven fields, of which only these two can change.
status_fields = Answer(lambda job: (job.status, job.message), shows_progress=False)
# The job route: every change, progress included.
any_field = Answer(lambda job: (job.status, job.message, job.updated_at, job.progress,
                                job.progress_message), shows_progress=True)


class SharedReads:
    """Reads of a job shared by its waiters in this process (one store each)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._running: dict[UUID, tuple[int, asyncio.Future[Job]]] = {}
        self._bodies: dict[UUID, tuple[Job, bytes]] = {}

    def body_of(self, job: Job, render: Callable[[Job], bytes]) -> bytes:
        """`render(job)`, made once for all the waiters that share this read of the job
        (the same object: a job record never changes, a new read makes a new one)."""
        found = self._bodies.get(job.id)
        if found is not None and found[0] is job:
            return found[1]
        body = render(job)
        if len(self._bodies) >= MAX_KEPT_BODIES:
            self._bodies.clear()
        self._bodies[job.id] = (job, body)
        return body

    async def read(self, job_id: UUID, not_before: int) -> Job:
        """The job, read by a read begun at change tick `not_before` or later (one that
        has seen every change the caller was told of)."""
        found = self._running.get(job_id)
        if found is None or found[0] < not_before:
            future = asyncio.ensure_future(self._read(job_id))
            found = (self._store.changes.tick, future)
            self._running[job_id] = found
            future.add_done_callback(functools.partial(self._done, job_id))
        # Shielded: one waiter leaving (its client went away) must not cancel the others' read.
        return await asyncio.shield(found[1])

    async def _read(self, job_id: UUID) -> Job:
        metrics.LONGPOLL_READS.inc()
        return await self._store.get(job_id)

    def _done(self, job_id: UUID, future: asyncio.Future[Job]) -> None:
        if self._running.get(job_id, (0, None))[1] is future:
            del self._running[job_id]
        if not future.cancelled():
            future.exception()  # each sharer sees it; none may be left to


_shared: weakref.WeakKeyDictionary[Store, SharedReads] = weakref.WeakKeyDictionary()


def shared_reads(store: Store) -> SharedReads:
    found = _shared.get(store)
    if found is None:
        found = _shared[store] = SharedReads(store)
    return found


async def wait_for_change(store: Store, job: Job, seconds: float, answer: Answer,
                          receive: Receive | None = None, seen: str | None = None,
                          read_at: int | None = None) -> Job:
    """The job once `answer`'s fingerprint differs from now, it is terminal, or time is up.
    `job` was read for the caller's tenant already (a job's tenant never changes), so
    later reads need no tenant and can be shared. With the request's `receive`, the wait
    also ends when the client goes away (the answer then goes nowhere): a waiter holds
    nothing for a client that left. With `seen`, the ETag of the answer the client
    has, a job that changed since is answered at once. `read_at`: the change tick
    (`store.changes.tick`) taken before `job` was read; if no change was published
    since, the wait needs no read of its own."""
    if seconds <= 0 or job.is_terminal or (seen is not None and answer.tag(job) != seen):
        return job
    if receive is None:
        return await _wait(store, job, seconds, answer, read_at)
    waiting = asyncio.ensure_future(_wait(store, job, seconds, answer, read_at))
    gone = asyncio.ensure_future(_client_gone(receive))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done() and gone.done() and gone.exception() is None:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            return job
        return await waiting
    finally:
        gone.cancel()
        waiting.cancel()


async def _client_gone(receive: Receive) -> None:
    """Returns once the client has disconnected. A GET's (empty) body is read and
    dropped on the way; a body past the size limit raises instead, and the wait goes on."""
    for _ in range(MAX_BODY_MESSAGES):
        if (await receive())["type"] == "http.disconnect":
            return
    await asyncio.Event().wait()  # a body of that many parts: the time limit ends the wait


async def _wait(store: Store, job: Job, seconds: float, answer: Answer,
                read_at: int | None) -> Job:
    deadline = time.monotonic() + seconds
    before = answer.fingerprint(job)
    reads = shared_reads(store)
    metrics.WAITING_REQUESTS.inc()
    try:
        with store.changes.watch_job(job.id, progress=answer.shows_progress) as changed:
            # Read once after watching: a change since `job` was read counts. None was
            # published since (the tick says): a later one will wake this waiter.
            current = (job if store.changes.tick == read_at
                       else await reads.read(job.id, store.changes.tick))
            while answer.fingerprint(current) == before and not current.is_terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # A notification can be lost (a dropped listener): look again now and
                # then anyway, at jittered times so that many waiters never re-read at once.
                notified = await wait_event(
                    changed, min(remaining, RECHECK_SECONDS * random.uniform(0.5, 1)))
                if not notified and time.monotonic() >= deadline:
                    break  # time is up and nothing was heard: the answer is as read
                if notified:
                    metrics.LONGPOLL_WAKEUPS.inc()
                changed.clear()
                current = await reads.read(job.id, store.changes.tick)
            return current
    finally:
        metrics.WAITING_REQUESTS.dec()
