"""Concurrent lookups gathered into one query.

A crowd of long-polls on a running job is answered at once after each progress
report, and every client asks again at once: on PostgreSQL that was a round
trip per request to check its token, a query's worth of the event loop's time
each (~27 % of it at 1,400 answers a second), and a queue of requests for pool
connections in front of everyone else's. Lookups made while one query is under
way wait for it to end and then go together in the next, so a crowd costs a
query per round trip, not per request. Each lookup still runs after its request
arrived: a token revoked before then is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")

# Lookups answered by one query at most (a query's parameters stay small).
MAX_GATHERED = 500


class GatheredLookups(Generic[Key, Value]):
    """`lookup(key)` for many callers, by `fetch(keys)`, which answers every key in order.

    One query runs at a time: the callers that arrive meanwhile go in the next,
    as a group commit does with its writers."""

    def __init__(self, fetch: Callable[[Sequence[Key]], Awaitable[Sequence[Value]]],
                 max_gathered: int = MAX_GATHERED) -> None:
        self._fetch = fetch
        self._max = max_gathered
        self._waiting: list[tuple[Key, asyncio.Future[Value]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def lookup(self, key: Key) -> Value:
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._runner is None:
            # Started, not run: whoever else asks in this turn of the loop joins.
            self._runner = asyncio.create_task(self._run(), name="gathered-lookups")
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
                wanted = [(key, future) for key, future in batch if not future.done()]
                if wanted:
                    await self._answer(wanted)
        finally:
            self._runner = None
            # Cancelled (the store closes): nobody may wait for a query that never runs.
            for _, future in self._waiting:
                future.cancel()
            self._waiting.clear()

    async def _answer(self, batch: list[tuple[Key, asyncio.Future[Value]]]) -> None:
        try:
            values = await self._fetch([key for key, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the store's failure is each caller's
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)
