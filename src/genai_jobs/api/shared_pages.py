"""Big pages: identical requests waiting together are read once, and answers go out
at a bounded rate.

A stampede of big pages (a dashboard opened in 400 tabs, a script's threads all
asking for the same listing) asks for the same bytes hundreds of times. The
requests waiting for a page slot (api/admission.py) with the same method, path,
query and headers (token, host, proxy headers: everything an answer can depend
on) form a group; when the group's turn comes it is closed to newcomers, the
application answers it once, and every member is sent that answer. Nobody sees
an older state than a request of their own would have: the shared reading
starts after every member's request arrived (a request that arrives while a
reading is under way waits for the next one, as status lookups do in
store/gathered.py).

Sending is work too: the kernel copies every byte into the reader's socket, and
400 members sent a 534 kB page at once took both cores for ~0.2 s (status polls
waited up to 190 ms). Answers go out a few members at a time, each answer in
slices made when their turn comes, at most `bytes_per_second` in all. A member
that does not read its answer holds one slice here (besides the kernel's
buffers) until the write stall time-out drops it, and one of the few sending
turns: the others queue behind it, as they queued behind one page slot before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from genai_jobs import metrics

log = logging.getLogger(__name__)

# An answer is sent this much at a time,
SLICE_BYTES = 256 * 1024
# to at most this many members at once.
SENDING_AT_ONCE = 4

# What an identical request repeats exactly.
Key = tuple[object, ...]
# Answers the group once: called with the first member's scope, a request without
# a body, where to send the answer, and `started`, to call when its turn has come.
AnswerOnce = Callable[[Scope, Receive, Send, Callable[[], None]], Awaitable[None]]
# Waits until `count` more bytes may be sent.
Pace = Callable[[int], Awaitable[None]]

_ERROR_BODY = b'{"detail":"internal error"}'
_SERVER_ERROR: list[Message] = [
    {"type": "http.response.start", "status": 500,
     "headers": [(b"content-type", b"application/json"),
                 (b"content-length", str(len(_ERROR_BODY)).encode())]},
    {"type": "http.response.body", "body": _ERROR_BODY},
]


class SharedPages:
    def __init__(self, answer_once: AnswerOnce, pace: Pace | None = None) -> None:
        self._answer_once = answer_once
        self._pace = pace
        self._waiting: dict[Key, asyncio.Future[list[Message]]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._sending = asyncio.Semaphore(SENDING_AT_ONCE)

    async def __call__(self, scope: Scope, send: Send) -> None:
        key = request_key(scope)
        answer = self._waiting.get(key)
        if answer is None:
            answer = asyncio.get_running_loop().create_future()
            self._waiting[key] = answer
            task = asyncio.create_task(self._answer(key, scope, answer))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        else:
            metrics.PAGES_SHARED.inc()
        # Shielded: a member that goes away does not take the others' answer with it.
        messages = await asyncio.shield(answer)
        async with self._sending:
            for message in messages:
                async for part in _slices(message, self._pace):
                    await send(part)

    async def _answer(self, key: Key, scope: Scope,
                      answer: asyncio.Future[list[Message]]) -> None:
        messages: list[Message] = []

        def started() -> None:
            if self._waiting.get(key) is answer:
                del self._waiting[key]

        async def keep(message: Message) -> None:
            messages.append(message)

        try:
            await self._answer_once(scope, _request_without_body(), keep, started)
        except Exception:
            # The application's error handler has answered and logged it, unless it
            # failed before answering: then every member gets one 500, logged once.
            if not _complete(messages):
                log.exception("a big page failed before it was answered")
                messages = _SERVER_ERROR
        except BaseException:
            answer.cancel()
            raise
        finally:
            started()
        answer.set_result(messages)


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
