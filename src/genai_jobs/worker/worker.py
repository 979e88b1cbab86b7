"""A worker: claims runnable jobs and runs up to `concurrency` attempts at once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from genai_jobs import metrics
from genai_jobs.domain import DomainError, Lease
from genai_jobs.handlers import Registry
from genai_jobs.handlers.context import StopReason
from genai_jobs.settings import Settings
from genai_jobs.store import Store
from genai_jobs.worker.attempt import Attempt, AttemptPolicy

log = logging.getLogger("genai_jobs.worker")


class Worker:
    def __init__(self, store: Store, registry: Registry, settings: Settings,
                 name: str | None = None) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{name or uuid.uuid4().hex[:8]}"
        self.policy = AttemptPolicy(
            lease_seconds=settings.lease_seconds,
            retry_base_seconds=settings.retry_base_seconds,
            retry_max_seconds=settings.retry_max_seconds,
        )
        self._attempts: dict[UUID, Attempt] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Attempts whose handler has ended but whose outcome is still being written:
        # their slots are free already, so the next claim can share a commit with
        # their outcomes instead of waiting for them.
        self._winding_down: set[UUID] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        # Set when shutdown left handler threads running (sync handlers that ignored it).
        self.abandoned_threads = False
        self._threads = ThreadPoolExecutor(max_workers=settings.concurrency,
                                           thread_name_prefix="genai-jobs-handler")

    @property
    def running(self) -> int:
        return len(self._tasks)

    def request_stop(self) -> None:
        """Stop claiming; `run` then finishes or releases what it runs and returns."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self.store.changes.subscribe_work(self._wake)
        log.info("worker %s started: job types %s, concurrency %d", self.owner,
                 ", ".join(sorted(self.registry.names())), self.settings.concurrency)
        try:
            while not self._stopping:
                self._wake.clear()
                await self._claim_and_start()
                await self._sleep_until_woken()
        finally:
            self.store.changes.unsubscribe_work(self._wake)
            await self._shut_down()
            log.info("worker %s stopped", self.owner)

    async def _claim_and_start(self) -> None:
        free = self.settings.concurrency - len(self._tasks) + len(self._winding_down)
        if free <= 0:
            return
        try:
            leases = await self.store.claim(self.owner, self.registry.names(),
                                             self.settings.lease_seconds, free)
        except DomainError as exc:
            log.warning("claiming failed, will retry: %s", exc)
            return
        for lease in leases:
            self._start(lease)

    def _start(self, lease: Lease) -> None:
        job_type = self.registry.get(lease.job.job_type)
        if job_type is None:  # claim() only takes registered types
            raise RuntimeError(f"claimed a job of unknown type {lease.job.job_type}")
        metrics.QUEUE_WAIT.labels(job_type.name).observe(
            max(0.0, time.time() - lease.job.run_after.timestamp()))
        attempt = Attempt(self.store, lease, job_type, self.policy, self._threads,
                          handler_done=lambda: self._handler_done(lease.job_id))
        self._attempts[lease.job_id] = attempt
        task = asyncio.create_task(self._run_attempt(attempt), name=f"job-{lease.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._attempt_done)

    async def _run_attempt(self, attempt: Attempt) -> None:
        started = time.monotonic()
        outcome = "lease lost"
        try:
            job = await attempt.run()
            if job is not None:
                outcome = job.status.value
        except Exception:
            outcome = "crashed"
            log.exception("job %s: the worker failed to record an outcome", attempt.job.id)
        finally:
            self._attempts.pop(attempt.job.id, None)
            self._winding_down.discard(attempt.job.id)
            metrics.RUN_TIME.labels(attempt.job.job_type, outcome).observe(
                time.monotonic() - started)
            metrics.ATTEMPTS_FINISHED.labels(attempt.job.job_type, outcome).inc()

    def _handler_done(self, job_id: UUID) -> None:
        self._winding_down.add(job_id)
        self._wake.set()  # a slot is free

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free

    async def _sleep_until_woken(self) -> None:
        try:
            async with asyncio.timeout(self.settings.idle_poll_seconds):
                await self._wake.wait()
        except TimeoutError:
            pass  # look again: a retry's back-off may have ended

    async def _shut_down(self) -> None:
        if self._tasks:
            log.info("worker %s: waiting up to %g s for %d running job(s)", self.owner,
                     self.settings.shutdown_grace_seconds, len(self._tasks))
            await asyncio.wait(set(self._tasks), timeout=self.settings.shutdown_grace_seconds)
        for attempt in list(self._attempts.values()):
            attempt.stop(StopReason.SHUTDOWN)
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks),
                                          timeout=self.settings.shutdown_stop_wait_seconds)
            for task in stuck:
                log.warning("%s did not stop; its lease will lapse and the job will be "
                            "taken back", task.get_name())
            self.abandoned_threads = bool(stuck)
        self._threads.shutdown(wait=False, cancel_futures=True)
