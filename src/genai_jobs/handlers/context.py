"""The context a handler receives: progress, the stop signal, the deadline, a logger.

Handlers may be coroutines (run on the worker's event loop) or plain
functions (run in a thread), so everything here is safe to call from either.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from genai_jobs.store import Store


class StopReason(enum.Enum):
    ABORTED = "aborted"
    DEADLINE = "deadline"
    ATTEMPT_TIMEOUT = "attempt time-out"
    LEASE_LOST = "lease lost"
    SHUTDOWN = "worker shutting down"


class JobCancelled(BaseException):
    """Raised inside a handler that is asked to stop.

    A BaseException, like asyncio.CancelledError, so that a handler's broad
    `except Exception` does not swallow it.
    """

    def __init__(self, reason: StopReason) -> None:
        super().__init__(f"the job was stopped: {reason.value}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProgressReport:
    fraction: float | None
    message: str


class JobContext:
    def __init__(
        self,
        *,
        job_id: UUID,
        job_type: str,
        attempt: int,
        max_attempts: int,
        deadline: datetime,
        on_progress: Callable[[], None],
        store: Store | None = None,
    ) -> None:
        self.job_id = job_id
        # The store the job runs on, for the service's own job types, which read and
        # write their records there (vectorDatabase.build). A user's handler has its
        # payload, and writes its outcome by returning it.
        self.store = store
        self.job_type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"genai_jobs.handler.{job_type}"), {"job_id": str(job_id)}
        )
        self._on_progress = on_progress
        self._latest: ProgressReport | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason: StopReason | None = None

    # -- progress -----------------------------------------------------------
    def progress(self, fraction: float | None = None, message: str = "") -> None:
        """Report how far the work is (0..1, kept to six decimal places) and what it
        is doing.

        Never blocks: the worker writes the latest report to the store soon
        after, so calling this often costs nothing.
        """
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be between 0 and 1, not {fraction}")
        if fraction is not None:
            # Six decimals are finer than any progress bar, and every store writes
            # such a number in JSON exactly as Python does (SQLite's own float
            # printing is exact to 15 digits only).
            fraction = round(float(fraction), 6)
        with self._lock:
            self._latest = ProgressReport(fraction, message)
        self._on_progress()

    @property
    def has_pending_progress(self) -> bool:
        return self._latest is not None

    def take_progress(self) -> ProgressReport | None:
        """The report not yet written, if any (called by the worker)."""
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    # -- stopping -----------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once the job must stop (abort, deadline, time-out, shutdown)."""
        return self._stop.is_set()

    @property
    def stop_reason(self) -> StopReason | None:
        return self._stop_reason

    def raise_if_cancelled(self) -> None:
        if self._stop_reason is not None:
            raise JobCancelled(self._stop_reason)

    def sleep(self, seconds: float) -> None:
        """Sleep in a sync handler, waking at once (JobCancelled) if told to stop."""
        if self._stop.wait(max(seconds, 0.0)):
            self.raise_if_cancelled()

    async def asleep(self, seconds: float) -> None:
        """Sleep in an async handler; stops are delivered by cancellation too."""
        self.raise_if_cancelled()
        await asyncio.sleep(max(seconds, 0.0))
        self.raise_if_cancelled()

    def seconds_left(self) -> float:
        """Seconds until the job's deadline."""
        return self.deadline.timestamp() - time.time()

    def request_stop(self, reason: StopReason) -> bool:
        """Ask the handler to stop; the first reason wins. True if this call set it."""
        with self._lock:
            if self._stop_reason is not None:
                return False
            self._stop_reason = reason
        self._stop.set()
        return True
