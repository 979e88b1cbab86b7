"""Bounds on expensive requests, so that a burst of them cannot stall everyone else.

Two kinds are expensive: big pages (a listing asking for more than
`LIGHT_PAGE_LIMIT` items: up to 1,000 jobs written as JSON by the database, a
core's work for ~20 ms) and uploads (a dataset file is read whole and ingested:
memory ~3x its size).
Each kind has its own number of slots. A request waits for a slot, first come
first served, at most `queue_seconds`; past that it is a `503` with `Retry-After`
and nothing done. Everything else (status polls, submits, small pages) never
waits here. Big pages take their turns in api/shared_pages.py, where identical
ones waiting together are read once and answers go out at `page_bytes_per_second`.

An upload takes its slot only once its whole body has arrived (the multipart
parser spools it to a temporary file meanwhile): a slow sender holds a
connection, not one of the few slots, and the memory the slots bound is the
memory the ingest uses. Upload memory is then at most about
`max_concurrent_uploads` x 3 x the upload size limit for an archive, a CSV or
a PDF (read whole), and a few megabytes for a text document on SQLite (checked
and stored a slice at a time from its temporary file: ten 160 MB uploads, +36 MB).

The bodies of uploads are taken in at most `upload_bytes_per_second` in all.
Receiving and parsing a body is the event loop's own work (~1.5 ms a megabyte
here): ten uploads sent at once over loopback kept it busy for seconds, and
every status poll waited behind ten chunks at each turn of the loop (p99 6x
quiet). Past the rate, an upload's next chunk waits; the server stops reading
its socket meanwhile, so the sender is slowed by TCP, not refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_jobs import metrics
from genai_jobs.api.shared_pages import BUSY, SharedPages, retry_after

# Pages up to this size are cheap (the default page is 100).
LIGHT_PAGE_LIMIT = 100
# Upload bytes taken in at once before the rate applies: a small upload never waits.
RATE_BURST_SECONDS = 0.05


class Slots:
    """A named number of slots, waited for in arrival order with a time limit."""

    def __init__(self, kind: str, count: int, queue_seconds: float) -> None:
        self.kind = kind
        self.queue_seconds = queue_seconds
        self._free = asyncio.Semaphore(count)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """Yields whether a slot was taken in time (and gives it back on exit)."""
        try:
            async with asyncio.timeout(self.queue_seconds):
                await self._free.acquire()
        except TimeoutError:
            metrics.HEAVY_REFUSED.labels(self.kind).inc()
            yield False
            return
        metrics.HEAVY_IN_FLIGHT.labels(self.kind).inc()
        try:
            yield True
        finally:
            metrics.HEAVY_IN_FLIGHT.labels(self.kind).dec()
            self._free.release()

    @property
    def retry_after(self) -> str:
        return retry_after(self.queue_seconds)


class ByteRate:
    """At most `per_second` bytes a second, in all, for those who `take` them (None:
    no bound). Whoever takes more than is left waits for the debt to be paid back, so
    concurrent takers are served in turn."""

    def __init__(self, per_second: float | None,
                 burst_seconds: float = RATE_BURST_SECONDS) -> None:
        self.per_second = per_second
        self._burst = (per_second or 0) * burst_seconds
        self._level = self._burst
        self._at = 0.0

    async def take(self, count: int) -> None:
        if self.per_second is None or count <= 0:
            return
        now = asyncio.get_running_loop().time()
        self._level = min(self._burst, self._level + (now - self._at) * self.per_second)
        self._at = now
        self._level -= count
        if self._level < 0:
            await asyncio.sleep(-self._level / self.per_second)


class HeavyRequestGate:
    def __init__(self, app: ASGIApp, *, max_heavy_pages: int, max_uploads: int,
                 queue_seconds: float, upload_paths: Collection[str],
                 upload_bytes_per_second: float | None = None,
                 page_bytes_per_second: float | None = None) -> None:
        self.app = app
        self.uploads = Slots("upload", max_uploads, queue_seconds)
        self.upload_paths = frozenset(upload_paths)
        self.upload_rate = ByteRate(upload_bytes_per_second)
        self.page_rate = ByteRate(page_bytes_per_second)
        self.pages = SharedPages(app, slots=max_heavy_pages, queue_seconds=queue_seconds,
                                 pace=self.page_rate.take)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "POST" and scope["path"] in self.upload_paths:
            async with contextlib.AsyncExitStack() as stack:
                await self.app(scope, self._gated_upload(receive, stack), send)
        elif scope["method"] == "GET" and _asks_big_page(scope):
            await self.pages(scope, send)
        else:
            await self.app(scope, receive, send)

    def _gated_upload(self, receive: Receive, stack: contextlib.AsyncExitStack) -> Receive:
        held = False

        async def gated() -> Message:
            nonlocal held
            message = await receive()
            if message["type"] != "http.request":
                return message
            await self.upload_rate.take(len(message.get("body", b"")))
            if not message.get("more_body", False) and not held:
                held = True
                if not await stack.enter_async_context(self.uploads.held()):
                    # Raised inside the app's reading: its error handler answers.
                    raise HTTPException(503, BUSY,
                                        headers={"Retry-After": self.uploads.retry_after})
            return message

        return gated


def _asks_big_page(scope: Scope) -> bool:
    query = scope.get("query_string", b"")
    if b"limit" not in query:
        return False
    values = parse_qs(query.decode("latin-1")).get("limit", [])
    return any(value.isdigit() and int(value) > LIGHT_PAGE_LIMIT for value in values)
