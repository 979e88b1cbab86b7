"""`waitSeconds`: hold an answer until the job changes, woken by the change feed."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable

from genai_jobs import metrics
from genai_jobs.domain import Job
from genai_jobs.store import Store
from genai_jobs.store.changes import wait_event

# A waiter re-reads its job at least this often, notified or not.
RECHECK_SECONDS = 10.0


def status_fields(job: Job) -> Hashable:
    """What the status route's answer shows."""
    return (job.status, job.message)


def any_field(job: Job) -> Hashable:
    """Every change, progress included (the job route)."""
    return (job.status, job.message, job.updated_at, job.progress, job.progress_message)


async def wait_for_change(
    store: Store, job: Job, tenant: str | None, seconds: float,
    fingerprint: Callable[[Job], Hashable],
) -> Job:
    """The job once `fingerprint(job)` differs from now, it is terminal, or time is up."""
    if seconds <= 0 or job.is_terminal:
        return job
    deadline = time.monotonic() + seconds
    before = fingerprint(job)
    metrics.WAITING_REQUESTS.inc()
    try:
        with store.changes.watch_job(job.id) as changed:
            # Re-read once after watching: a change since `job` was read counts.
            current = await store.get(job.id, tenant)
            while fingerprint(current) == before and not current.is_terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # A notification can be lost (a dropped listener): look again now and
                # then anyway, at jittered times so that many waiters never re-read at once.
                await wait_event(changed, min(remaining, RECHECK_SECONDS * random.uniform(0.5, 1)))
                changed.clear()
                current = await store.get(job.id, tenant)
            return current
    finally:
        metrics.WAITING_REQUESTS.dec()
