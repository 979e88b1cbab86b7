"""Big pages take turns: identical requests waiting together are read once, and
answers go out at a bounded rate.

A big page (a listing of more than 100 items) waits for one of `slots` turns,
first come first served, at most `queue_seconds`; past that it is answered `503`
with `Retry-After`, nothing read.

A stampede of big pages (a dashboard opened in 400 tabs, a script's threads all
asking for the same listing) asks for the same bytes hundreds of times. Requests
waiting for their turn with the same method, path, query and headers (token,
host, proxy headers: everything an answer can depend on) form a group; when the
group's turn comes it is closed to newcomers, the application answers it once,
and every member is sent that answer. Nobody sees an older state than a request
of their own would have: the shared reading starts after every member's request
arrived (a request that arrives while a reading is under way waits for the next
one, as status lookups do in store/gathered.py).

Arriving is cheap, since 400 requests can arrive in one turn of the event loop
and every status poll that came with them waits until they have all been taken
in: a request joins or opens a group in a queue. A few readers, started only while
the queue holds groups, take them in order, and one timer answers the groups that
waited too long. (A task and a time-out per request cost the loop ~25 µs each.)

Sending is work too: the kernel copies every byte into the reader's socket, and
400 members sent a 534 kB page at once took both cores for ~0.2 s (status polls
waited up to 190 ms). Answers go out a few members at a time, each answer in
slices made when their turn comes, at a pace the caller sets, and the next
reading waits while `slots` + 1 answers are still being sent (two, with the one
slot of the defaults): reading ahead would only heap answers up in memory and
crowd the loop's work into the first second. A member that does not read its
answer holds one slice here (besides the kernel's buffers), one of the few
sending turns and its answer until the write stall time-out drops it: `slots` + 1
such members hold the readings back that long, as one held the page slot before.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_jobs import metrics

log = logging.getLogger(__name__)

# An answer is sent this much at a time,
SLICE_BYTES = 256 * 1024
# to at most this many members at once.
SENDING_AT_ONCE = 4
# Answers read and not yet sent to every member, beyond one a slot: the next reading
# waits below this.
UNSENT_ANSWERS_BEYOND_SLOTS = 1
BUSY = "the server is busy with other large requests; try again shortly"

# What an identical request repeats exactly.
Key = tuple[object, ...]
# Waits until `count` more bytes may be sent.
Pace = Callable[[int], Awaitable[None]]


def retry_after(queue_seconds: float) -> str:
    """The `Retry-After` of a busy answer, in seconds: a quarter of the longest wait."""
    return str(max(1, round(queue_seconds / 4)))


def json_answer(status: int, body: bytes, *headers: tuple[bytes, bytes]) -> list[Message]:
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), *headers]},
            {"type": "http.response.body", "body": body}]


_SERVER_ERROR = json_answer(500, b'{"detail":"internal error"}')


@dataclass(eq=False)
class _Group:
    key: Key
    scope: Scope  # the first member's
    arrived: float
    answer: asyncio.Future[list[Message]]
    members: int = field(default=1)
    unsent: int = field(default=1)  # members not yet sent the answer
    read: bool = field(default=False)  # holds a place among the unsent answers


class SharedPages:
    def __init__(self, app: ASGIApp, *, slots: int, queue_seconds: float,
                 pace: Pace | None = None) -> None:
        self.app = app
        self.slots = slots
        self.queue_seconds = queue_seconds
        self._pace = pace
        self._queue: collections.deque[_Group] = collections.deque()
        self._open: dict[Key, _Group] = {}  # groups still taking members
        self._readers: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.TimerHandle | None = None
        self._sending = asyncio.Semaphore(SENDING_AT_ONCE)
        self._unsent_answers = asyncio.Semaphore(slots + UNSENT_ANSWERS_BEYOND_SLOTS)
        body = b'{"detail":"' + BUSY.encode() + b'"}'
        self._busy = json_answer(503, body, (b"retry-after", retry_after(queue_seconds).encode()))

    async def __call__(self, scope: Scope, send: Send) -> None:
        key = request_key(scope)
        group = self._open.get(key)
        if group is None:
            loop = asyncio.get_running_loop()
            group = _Group(key, scope, loop.time(), loop.create_future())
            self._open[key] = group
            self._queue.append(group)
            self._start_readers(loop)
        else:
            group.members += 1
            group.unsent += 1
            metrics.PAGES_SHARED.inc()
        try:
            # Shielded: a member that goes away does not take the others' answer with it.
            messages = await asyncio.shield(group.answer)
            async with self._sending:
                for message in messages:
                    async for part in _slices(message, self._pace):
                        await send(part)
        finally:
            group.unsent -= 1
            if group.unsent == 0 and group.read:
                self._unsent_answers.release()

    def _start_readers(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._readers) < self.slots:
            self._readers.add(loop.create_task(self._read_while_queued()))
        if self._expiry is None:
            self._expiry = loop.call_at(self._queue[0].arrived + self.queue_seconds,
                                        self._expire)

    async def _read_while_queued(self) -> None:
        try:
            while self._queue:
                # Reading faster than the answers go out would only heap them up here:
                # the loop's work of reading is spread over the time of sending.
                await self._unsent_answers.acquire()
                if not self._queue:  # expired meanwhile
                    self._unsent_answers.release()
                    break
                group = self._take(self._queue.popleft())
                group.read = True
                metrics.HEAVY_IN_FLIGHT.labels("page").inc()
                try:
                    # On SQLite a page is read and serialised without yielding: let the
                    # requests that arrived meanwhile (status polls) go first.
                    await asyncio.sleep(0)
                    group.answer.set_result(await self._read(group.scope))
                    if group.unsent == 0:  # every member went away meanwhile
                        self._unsent_answers.release()
                except BaseException:
                    group.answer.cancel()
                    raise
                finally:
                    metrics.HEAVY_IN_FLIGHT.labels("page").dec()
        finally:
            # At once, not in a done callback: a group queued in between would find
            # this reader still counted and wait for nobody.
            self._readers.discard(asyncio.current_task())

    def _expire(self) -> None:
        self._expiry = None
        loop = asyncio.get_running_loop()
        while self._queue and self._queue[0].arrived + self.queue_seconds <= loop.time():
            group = self._take(self._queue.popleft())
            metrics.HEAVY_REFUSED.labels("page").inc(group.members)
            group.answer.set_result(self._busy)
        if self._queue:
            self._expiry = loop.call_at(self._queue[0].arrived + self.queue_seconds,
                                        self._expire)

    def _take(self, group: _Group) -> _Group:
        """The group, closed to newcomers: its turn has come (or its time is up)."""
        if self._open.get(group.key) is group:
            del self._open[group.key]
        return group

    async def _read(self, scope: Scope) -> list[Message]:
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, _request_without_body(), keep)
        except Exception:
            # The application's error handler has answered and logged it, unless it
            # failed before answering: then every member gets one 500, logged once.
            if not _complete(messages):
                log.exception("a big page failed before it was answered")
                return _SERVER_ERROR
        return messages


def request_key(scope: Scope) -> Key:
    """Everything of a request its answer can depend on, but the connection it came on."""
    return (scope["method"], scope.get("scheme"), scope.get("server"), scope.get("root_path"),
            scope["path"], scope.get("query_string", b""), tuple(scope["headers"]))


def _complete(messages: list[Message]) -> bool:
    return bool(messages) and messages[-1]["type"] == "http.response.body" and not (
        messages[-1].get("more_body", False))


async def _slices(message: Message, pace: Pace | None) -> AsyncIterator[Message]:
    """The message, its body cut into slices each made when its turn has come (made at
    once for hundreds of members, they would be as many copies of the page)."""
    if message["type"] != "http.response.body":
        yield message
        return
    body = message.get("body", b"")
    more_after = message.get("more_body", False)
    view = memoryview(body)
    for start in range(0, max(len(body), 1), SLICE_BYTES):
        size = min(SLICE_BYTES, len(body) - start)
        if pace is not None:
            await pace(size)
        chunk = body if size == len(body) else bytes(view[start:start + size])
        yield {"type": "http.response.body", "body": chunk,
               "more_body": more_after or start + size < len(body)}


def _request_without_body() -> Receive:
    """A GET's one body message, then nothing: the reading outlives any one member's
    connection, so it never hears of a disconnect."""
    sent = False
    never = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()
        raise AssertionError("never set")

    return receive
