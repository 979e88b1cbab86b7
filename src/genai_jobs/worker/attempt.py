"""One attempt of one job: run its handler under supervision and record the outcome.

While the handler runs, the supervisor renews the lease, writes progress,
notices abort requests (from the change feed, and on every renewal in case a
notification was missed), and enforces the deadline and the attempt time-out.
It stops the handler first and writes the final state only after the handler
has returned: ABORTED and EXPIRED mean that the work has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from genai_jobs.domain import Job, JobState, Lease, LeaseLost, StoreUnavailable, rules
from genai_jobs.handlers import JobCancelled, JobContext, JobType, PermanentError, ResultLocation
from genai_jobs.handlers.context import StopReason
from genai_jobs.store import Store
from genai_jobs.worker.backoff import retry_delay

log = logging.getLogger("genai_jobs.worker")

# Progress is written at most this often per job (handlers may report far more often).
PROGRESS_WRITE_INTERVAL = 0.2
# A lease is renewed when this fraction of it has passed.
RENEW_FRACTION = 1 / 3
# While the store is unreachable, renewals and the final write are retried this often.
STORE_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class AttemptPolicy:
    lease_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float


class Attempt:
    def __init__(
        self,
        store: Store,
        lease: Lease,
        job_type: JobType,
        policy: AttemptPolicy,
        threads: Executor,
        handler_done: Callable[[], None] | None = None,
    ) -> None:
        """`handler_done()` is called once the handler has returned or stopped, before
        its outcome is written: from then on the attempt no longer holds a slot."""
        self.store = store
        self._handler_done = handler_done
        self.lease = lease
        self.job = lease.job
        self.job_type = job_type
        self.policy = policy
        self._threads = threads
        self._attention = asyncio.Event()
        self._job_changed = False
        self._last_progress_write = 0.0
        loop = asyncio.get_running_loop()

        def on_progress() -> None:  # may run in a handler's thread
            loop.call_soon_threadsafe(self._attention.set)

        self.ctx = JobContext(
            job_id=self.job.id,
            job_type=self.job.job_type,
            attempt=self.job.attempts,
            max_attempts=self.job.max_attempts,
            deadline=self.job.expires_at,
            on_progress=on_progress,
            store=store,
        )
        self._handler: asyncio.Task[Any] | None = None
        self._abort_reason: str | None = None
        # Until when the lease surely holds, by this machine's clock (a little
        # earlier than the store's reckoning, since the claim took time to reach us).
        self._lease_until = time.time() + policy.lease_seconds

    async def run(self) -> Job | None:
        """Run the attempt to its end; the job as recorded (None if the lease was lost)."""
        try:
            payload = self.job_type.payload_model.model_validate(self.job.payload)
        except ValidationError as exc:
            return await self._fail(PermanentError(f"stored payload is no longer valid: {exc}"))
        self._handler = asyncio.create_task(self._call_handler(payload))
        watcher = asyncio.create_task(self._watch_job())
        try:
            await self._supervise(self._handler)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if self._handler_done is not None:
            self._handler_done()
        return await self._record_outcome(self._handler)

    def stop(self, reason: StopReason) -> None:
        """Ask the handler to stop (the first reason wins)."""
        if self.ctx.request_stop(reason):
            log.info("stopping job %s: %s", self.job.id, reason.value)
            # A coroutine can be cancelled; a thread can only be told (ctx.cancelled).
            if self._handler is not None and self.job_type.is_async:
                self._handler.cancel()
            self._attention.set()

    # -- running the handler ----------------------------------------------
    async def _call_handler(self, payload: Any) -> Any:
        handler: Callable[..., Any] = self.job_type.handler
        if self.job_type.is_async:
            return await handler(self.ctx, payload)
        loop = asyncio.get_running_loop()
        return await asyncio.shield(loop.run_in_executor(self._threads, handler, self.ctx, payload))

    async def _watch_job(self) -> None:
        """Turn change notifications for this job into attention for the supervisor
        (its progress is this attempt's own: only other changes, an abort, matter)."""
        with self.store.changes.watch_job(self.job.id, progress=False) as changed:
            while True:
                await changed.wait()
                changed.clear()
                self._job_changed = True
                self._attention.set()

    # -- supervision ------------------------------------------------------
    async def _supervise(self, handler: asyncio.Task[Any]) -> None:
        renew_every = self.policy.lease_seconds * RENEW_FRACTION
        next_renewal = time.time() + renew_every
        timeout_at = self._attempt_timeout_at()
        while not handler.done():
            wake_at = next_renewal
            if self.ctx.stop_reason is None:  # once stopping, only the lease needs a clock
                wake_at = min(wake_at, self.job.expires_at.timestamp(), timeout_at)
            await self._wait_for_attention(handler, wake_at - time.time())
            await self._write_progress()
            now = time.time()
            if self._job_changed:
                self._job_changed = False
                await self._reread()
            if now >= next_renewal:
                renewed = await self._renew()
                next_renewal = now + (renew_every if renewed else STORE_RETRY_SECONDS)
            if now >= self.job.expires_at.timestamp():
                self.stop(StopReason.DEADLINE)
            if now >= timeout_at:
                self.stop(StopReason.ATTEMPT_TIMEOUT)
        await self._write_progress(force=True)

    def _attempt_timeout_at(self) -> float:
        limit = self.job_type.attempt_timeout
        return float("inf") if limit is None else time.time() + limit

    async def _wait_for_attention(self, handler: asyncio.Task[Any], seconds: float) -> None:
        if self.ctx.has_pending_progress:
            due = self._last_progress_write + PROGRESS_WRITE_INTERVAL - time.time()
            seconds = min(seconds, due)
        if seconds <= 0:
            return
        attention = asyncio.create_task(self._attention.wait())
        try:
            await asyncio.wait({handler, attention}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            attention.cancel()
        self._attention.clear()

    async def _write_progress(self, force: bool = False) -> None:
        now = time.time()
        if not force and now < self._last_progress_write + PROGRESS_WRITE_INTERVAL:
            return
        report = self.ctx.take_progress()
        if report is None or self.ctx.stop_reason is StopReason.LEASE_LOST:
            return
        self._last_progress_write = now
        try:
            await self.store.report_progress(self.lease, report.fraction, report.message)
        except LeaseLost:
            self.stop(StopReason.LEASE_LOST)
        except StoreUnavailable as exc:  # progress is advisory: the next report replaces it
            log.warning("job %s: progress not recorded: %s", self.job.id, exc)

    async def _reread(self) -> None:
        with contextlib.suppress(StoreUnavailable):  # the next renewal reads it again
            self._check(await self.store.get(self.job.id))

    async def _renew(self) -> bool:
        """Extend the lease; False if the store could not be reached (try again soon)."""
        asked_at = time.time()
        try:
            self._check(await self.store.heartbeat(self.lease, self.policy.lease_seconds))
        except LeaseLost:
            self.stop(StopReason.LEASE_LOST)
        except StoreUnavailable as exc:
            log.warning("job %s: lease not renewed: %s", self.job.id, exc)
            if time.time() >= self._lease_until:
                # Another worker may take the job now: this one must stop.
                self.stop(StopReason.LEASE_LOST)
            return False
        else:
            self._lease_until = asked_at + self.policy.lease_seconds
        return True

    def _check(self, job: Job) -> None:
        if job.status is not JobState.RUNNING or job.lease_id != self.lease.lease_id:
            self.stop(StopReason.LEASE_LOST)
        elif job.abort_reason is not None:
            self._abort_reason = job.abort_reason
            self.stop(StopReason.ABORTED)

    # -- recording the outcome --------------------------------------------
    async def _record_outcome(self, handler: asyncio.Task[Any]) -> Job | None:
        """Write the outcome, retrying while the store is unreachable and the lease holds.

        If the lease runs out first, the job is taken back and run again:
        at-least-once, never a guess written after the fact.
        """
        if not handler.cancelled():
            handler.exception()  # seen here, so asyncio does not report it as lost
        while True:
            try:
                return await self._write_outcome(handler)
            except StoreUnavailable as exc:
                if time.time() + STORE_RETRY_SECONDS >= self._lease_until:
                    log.error("job %s: outcome not recorded, the lease ran out: %s",
                              self.job.id, exc)
                    return None
                log.warning("job %s: outcome not recorded yet: %s", self.job.id, exc)
                await asyncio.sleep(STORE_RETRY_SECONDS)

    async def _write_outcome(self, handler: asyncio.Task[Any]) -> Job | None:
        reason = self.ctx.stop_reason
        try:
            if reason is not None:
                return await self._record_stop(reason)
            error = handler.exception()
            if error is not None:
                return await self._fail(error)
            try:
                return await self._complete(handler.result())
            except (TypeError, ValueError) as exc:  # the store could not encode it
                return await self._fail(PermanentError(f"the result is not JSON: {exc}"))
        except LeaseLost:
            log.warning("job %s: lease lost before the outcome was written", self.job.id)
            return None

    async def _complete(self, result: Any) -> Job:
        if isinstance(result, ResultLocation):
            return await self.store.complete(self.lease, result.result, result.url)
        return await self.store.complete(self.lease, result, None)

    async def _record_stop(self, reason: StopReason) -> Job | None:
        if reason is StopReason.ABORTED:
            who = self._abort_reason or "on request"
            return await self.store.finish(self.lease, JobState.ABORTED,
                                           rules.aborted_after_stop(who))
        if reason is StopReason.DEADLINE:
            deadline = self.job.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            return await self.store.finish(self.lease, JobState.EXPIRED,
                                           f"expired: not finished by its deadline {deadline}; "
                                           "its handler was stopped")
        if reason is StopReason.ATTEMPT_TIMEOUT:
            return await self._fail(TimeoutError(
                f"the attempt took longer than {self.job_type.attempt_timeout:g} s"))
        if reason is StopReason.SHUTDOWN:
            return await self.store.release(self.lease, "released by a worker that shut down; "
                                                        "waiting for another worker")
        return None  # LEASE_LOST: the job is someone else's now

    async def _fail(self, error: BaseException) -> Job:
        attempt = rules.attempt_label(self.job.attempts, self.job.max_attempts)
        message = f"{_describe(error)} ({attempt})"
        if isinstance(error, PermanentError) or self.job.attempts >= self.job.max_attempts:
            return await self.store.fail_attempt(self.lease, message, None)
        delay = retry_delay(self.job.attempts, self.policy.retry_base_seconds,
                            self.policy.retry_max_seconds)
        log.info("job %s failed %s; retrying in %.1f s", self.job.id, attempt, delay)
        return await self.store.fail_attempt(
            self.lease, rules.retrying(message, delay),
            datetime.now(UTC) + timedelta(seconds=delay))


def _describe(error: BaseException) -> str:
    """One line for the job's message: what went wrong, never a stack trace."""
    if isinstance(error, JobCancelled):
        return f"stopped: {error.reason.value}"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    return f"{name}: {text}" if text else name
