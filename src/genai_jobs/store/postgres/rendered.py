"""Job documents PostgreSQL has already written, kept by row version.

Writing a job's JSON is most of a big page's cost on PostgreSQL (~9 ms of a
backend's CPU for 1,000 jobs; listing their versions alone, ~1.4 ms). Beside
400 concurrent big pages, those backends took a core from the status polls
answered meanwhile. Most jobs in a page have not changed since the last page
that held them (finished jobs never change), so the page is asked for in two
steps: first each row's version, then JSON only for the rows this process has
not seen in that version.

A version is the row's id, `xmin` (the transaction that wrote this version of
the row: every UPDATE writes a new one) and `updated_at` (so that a transaction
id that came round again after 2^32 transactions cannot match an old entry).
The same version always renders the same document, so an entry is never stale:
each page still reads every row's version after the request arrived, and any
row that changed is written afresh. Each API process keeps its own entries; no
process needs to know what the others wrote.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from genai_jobs.domain import JobPageJson

# Enough for ~40,000 typical documents; a few big payloads or results fill it sooner.
MAX_BYTES = 32 * 1024 * 1024
# A document this big is written again when next listed rather than crowd out the others.
MAX_ITEM_BYTES = 64 * 1024


class RenderedJobs:
    """Documents by version key, least recently listed dropped first, within `max_bytes`."""

    def __init__(self, max_bytes: int = MAX_BYTES,
                 max_item_bytes: int = MAX_ITEM_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def assemble(self, rows: Sequence[tuple[int, str | None, str | None]]
                 ) -> JobPageJson | list[str]:
        """The page, or the ids of the rows whose documents must be asked for."""
        items: list[bytes] = []
        missing: list[str] = []
        for _, key, item in rows:
            if key is None:  # no job in this page: the one row only carries the total
                break
            if item is not None:
                document = item.encode()
                self._keep(key, document)
                items.append(document)
                continue
            known = self._items.get(key)
            if known is None:
                missing.append(key.partition(" ")[0])
            else:
                self._items.move_to_end(key)
                items.append(known)
        if missing:
            return missing
        total = rows[0][0] if rows else 0
        return JobPageJson(data=b"[" + b",".join(items) + b"]", count=len(items),
                           total_count=int(total))

    def _keep(self, key: str, document: bytes) -> None:
        if len(document) > self.max_item_bytes or key in self._items:
            return
        self._items[key] = document
        self._bytes += len(document)
        while self._bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)
