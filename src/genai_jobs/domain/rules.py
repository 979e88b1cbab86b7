"""Decisions every store makes the same way, and the words it records for them.

The stores differ in how they change a row (SQL dialects, locking), never in
what the change is: which state a lapsed lease leads to, that a pending abort
beats a retry, what the job's `message` says. Those live here, once.
"""

from __future__ import annotations

from genai_jobs.domain.records import Job
from genai_jobs.domain.states import JobState

# What the sweep writes, followed by the deadline in ISO 8601.
EXPIRED_BY_SWEEP = "expired: not finished by its deadline "
EXPIRED_AT_OUTCOME = "expired: not finished by its deadline"


def attempt_label(attempts: int, max_attempts: int) -> str:
    return f"attempt {attempts} of {max_attempts}"


def aborted_before_start(reason: str) -> str:
    return f"aborted {reason} before it started"


def abort_requested(reason: str) -> str:
    return f"abort requested {reason}; waiting for its worker to stop it"


def aborted_after_stop(reason: str) -> str:
    return f"aborted {reason}; its handler stopped"


def retrying(message: str, delay_seconds: float) -> str:
    return f"{message}; retrying in {delay_seconds:.1f} s"


def requeue_target(abort_reason: str | None) -> tuple[JobState, str | None]:
    """Where a job goes when its attempt ends unfinished (a retry, a release).

    Back to the queue, unless an abort is pending: its handler has stopped,
    so the abort wins, with the message to record instead.
    """
    if abort_reason is not None:
        return JobState.ABORTED, aborted_after_stop(abort_reason)
    return JobState.INITIALIZED, None


def reclaim(job: Job, retry_delay_seconds: float) -> tuple[JobState, str]:
    """What becomes of a RUNNING job whose lease lapsed (its worker presumed dead)."""
    attempt = attempt_label(job.attempts, job.max_attempts)
    if job.abort_reason is not None:
        return JobState.ABORTED, f"aborted {job.abort_reason}; its worker was lost during {attempt}"
    if job.attempts >= job.max_attempts:
        return JobState.ERROR, f"worker lost: its lease lapsed during {attempt}"
    return JobState.INITIALIZED, retrying(f"worker lost during {attempt}", retry_delay_seconds)
