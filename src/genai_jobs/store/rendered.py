"""Job documents the database has already written, kept by row version.

Writing a job's JSON is most of a big page's cost (PostgreSQL: ~9 ms of a
backend's CPU for 1,000 jobs, listing their versions alone ~1.3 ms; SQLite:
~10 ms of a thread). Beside 400 concurrent big pages, that work took a core
from the status polls answered meanwhile. Most jobs in a page have not changed
since the last page that held them (finished jobs never change), so a page is
asked for in two steps: first each row's version, then JSON only for the rows
this process has not seen in that version.

A version key is the row's id and what changes whenever the store changes it:
on PostgreSQL `xmin` (the transaction that wrote this version of the row: every
UPDATE writes a new one) and `updated_at` (so that a transaction id that came
round again after 2^32 transactions cannot match an old entry); on SQLite
`change_seq`, which every change the store makes takes from one counter (the
store owns its file: a row changed behind its back keeps its old document here
until it changes again through the store). The same version always renders the
same document, so an entry is never stale: each page still reads every row's
version after the request arrived, and any row that changed is written afresh.
Each API process keeps its own entries; no process needs to know what the
others wrote.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from genai_jobs.domain import JobPageJson

# Enough for ~40,000 typical documents; a few big payloads or results fill it sooner.
MAX_BYTES = 32 * 1024 * 1024
# A document this big is written again when next listed rather than crowd out the others.
MAX_ITEM_BYTES = 64 * 1024
# Readings of one page at most; the last writes every row's document.
PAGE_ROUNDS = 3

# The page statement's rows: (total, comma-separated keys, None, None), then
# (None, None, key, document) for each document written.
Rows = Sequence[tuple[int | None, str | None, str | None, str | None]]
# Reads the page: its keys alone when asked for nothing (None), else also the
# documents of the rows whose ids are asked for, or of every row.
ReadPage = Callable[[list[str] | None, bool], Awaitable[Rows]]


class RenderedJobs:
    """Documents by version key, the oldest written dropped first, within `max_bytes`."""

    def __init__(self, max_bytes: int = MAX_BYTES,
                 max_item_bytes: int = MAX_ITEM_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self._items: dict[str, bytes] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    async def page(self, read: ReadPage) -> JobPageJson:
        """The page `read` reads. Each round reads it again: a row that changed since the
        last round is written afresh. Rows keep changing under a busy page, so the last
        round writes them all."""
        asked: list[str] | None = None
        for round_number in range(1, PAGE_ROUNDS + 1):
            page = self.assemble(await read(asked, round_number == PAGE_ROUNDS))
            if isinstance(page, JobPageJson):
                return page
            asked = page
        raise AssertionError("the last round writes every document")

    def assemble(self, rows: Rows) -> JobPageJson | list[str]:
        """The page, or the ids of the rows whose documents must be asked for."""
        total, joined = 0, None
        written: dict[str, bytes] = {}
        for row_total, row_keys, key, item in rows:
            if key is None:
                total, joined = int(row_total or 0), row_keys
            elif item is not None:
                written[key] = document = item.encode()
                self._keep(key, document)
        keys = joined.split(",") if joined else []
        known = self._items
        found = ([written.get(key) or known.get(key) for key in keys] if written
                 else [known.get(key) for key in keys])
        if None in found:
            return [key.partition(" ")[0] for key, document in zip(keys, found, strict=True)
                    if document is None]
        return JobPageJson(data=b"[" + b",".join(cast(list[bytes], found)) + b"]",
                           count=len(found), total_count=total)

    def _keep(self, key: str, document: bytes) -> None:
        if len(document) > self.max_item_bytes or key in self._items:
            return
        self._items[key] = document
        self._bytes += len(document)
        while self._bytes > self.max_bytes:
            # The oldest written go first. Not the least recently listed: moving each
            # listed document to the end cost a third of a warm page's time.
            dropped = self._items.pop(next(iter(self._items)))
            self._bytes -= len(dropped)
