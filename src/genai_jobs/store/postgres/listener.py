"""LISTEN on the `genai_jobs` channel and turn notifications into local wake-ups.

One connection per process, outside the pool. When it drops (a database
restart, a fail-over) it is opened again with back-off, and every local
waiter is woken once it is back, since notifications sent meanwhile are lost.
Waiters also look again now and then by themselves (api/longpoll.py), and idle
workers every second, so a lost notification costs latency, never a job.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import psycopg

from genai_jobs.store.changes import ChangeFeed

log = logging.getLogger("genai_jobs.store.postgres")

CHANNEL = "genai_jobs"
RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 5.0
# After this long without a notification, the connection is checked.
LIVENESS_SECONDS = 10.0


class Listener:
    def __init__(self, conninfo: str, changes: ChangeFeed) -> None:
        self.conninfo = conninfo
        self.changes = changes
        self.connected = asyncio.Event()

    async def run(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                if self.connected.is_set():
                    log.warning("lost the notification connection (%s); reconnecting", exc)
                self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            else:
                delay = RECONNECT_MIN_SECONDS

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            self.changes.wake_all()  # whatever happened while we were not listening
            while True:
                async for notify in conn.notifies(timeout=LIVENESS_SECONDS):
                    self._dispatch(notify.payload)
                # Quiet for a while: make sure the connection is alive (raises if not),
                # rather than trusting a silence that may be a dead socket.
                await conn.execute("SELECT 1")

    def _dispatch(self, payload: str) -> None:
        """'<job id> <status>', and ' progress' after it when the change moved the job's
        progress alone (the trigger of migration 0005 says so)."""
        job_id, _, rest = payload.partition(" ")
        status, _, kind = rest.partition(" ")
        try:
            self.changes.job_changed(UUID(job_id), progress_only=kind == "progress")
        except ValueError:
            log.warning("ignoring a malformed notification %r", payload)
            return
        if status == "INITIALIZED":
            self.changes.work_available()
