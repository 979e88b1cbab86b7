"""The sweep that keeps the store honest without any one worker: it expires
jobs past their deadline, takes back jobs whose worker was lost, and purges
old terminal jobs. Every worker process and every `serve` runs it; each step
is a compare-and-set, so sweeps from several processes never conflict."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from genai_jobs import metrics
from genai_jobs.domain import DomainError
from genai_jobs.settings import Settings
from genai_jobs.store import Store
from genai_jobs.worker.backoff import retry_delay

log = logging.getLogger("genai_jobs.maintenance")

# Purging scans for old rows; once a minute is plenty for a retention in days.
PURGE_INTERVAL_SECONDS = 60.0


class Maintenance:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._last_purge = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except (DomainError, OSError) as exc:
                log.warning("maintenance sweep failed, will retry: %s", exc)
            try:
                async with asyncio.timeout(self.settings.maintenance_interval_seconds):
                    await stop.wait()
            except TimeoutError:
                pass

    async def sweep(self) -> None:
        # None: the store's clock decides, the one clock every machine shares.
        expired = await self.store.expire_overdue(None, self.settings.deadline_grace_seconds)
        if expired:
            metrics.JOBS_EXPIRED.inc(len(expired))
            log.info("expired %d job(s) past their deadline", len(expired))
        delay = retry_delay(1, self.settings.retry_base_seconds, self.settings.retry_max_seconds)
        reclaimed = await self.store.reclaim_lapsed(None, delay)
        if reclaimed:
            metrics.LEASES_RECLAIMED.inc(len(reclaimed))
            log.warning("took back %d job(s) from lost workers", len(reclaimed))
        if time.monotonic() - self._last_purge >= PURGE_INTERVAL_SECONDS:
            self._last_purge = time.monotonic()
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.retention_seconds)
            purged = await self.store.purge(cutoff)
            if purged:
                log.info("purged %d terminal job(s) older than the retention", purged)
