"""Identical big pages waiting for the same slot are answered by one reading.

A stampede of big pages (a dashboard opened in 400 tabs, a script's threads all
asking for the same listing) asks for the same bytes hundreds of times. The
requests waiting for a page slot (api/admission.py) with the same method, path,
query and headers (token, host, proxy headers: everything an answer can depend
on) form a group; when the group's turn comes it is closed to newcomers, the
application answers it once, and every member is sent that answer.

Nobody sees an older state than a request of their own would have: the shared
reading starts after every member's request arrived (a request that arrives
while a reading is under way waits for the next one, as status lookups do in
store/gathered.py).

The answer is sent to each member in slices: a member that does not read its
answer holds one slice in this process (besides the kernel's buffers), not a
copy of the whole page, until the write stall time-out drops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from genai_jobs import metrics

# A member's answer is sent this much at a time.
SLICE_BYTES = 256 * 1024

# What an identical request repeats exactly.
Key = tuple[object, ...]
# Answers the group once: called with the first member's scope, a request without
# a body, where to send the answer, and `started`, to call when its turn has come.
AnswerOnce = Callable[[Scope, Receive, Send, Callable[[], None]], Awaitable[None]]


class SharedPages:
    def __init__(self, answer_once: AnswerOnce) -> None:
        self._answer_once = answer_once
        self._waiting: dict[Key, asyncio.Future[list[Message]]] = {}
        self._running: set[asyncio.Task[None]] = set()

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
        for message in await asyncio.shield(answer):
            await _send_in_slices(message, send)

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
        except Exception as exc:
            answer.set_exception(exc)
        except BaseException:
            answer.cancel()
            raise
        else:
            answer.set_result(messages)
        finally:
            started()
            # Marks the outcome as seen even when every member has gone.
            answer.add_done_callback(lambda done: done.cancelled() or done.exception())


def request_key(scope: Scope) -> Key:
    """Everything of a request its answer can depend on, but the connection it came on."""
    return (scope["method"], scope.get("scheme"), scope.get("server"), scope.get("root_path"),
            scope["path"], scope.get("query_string", b""), tuple(scope["headers"]))


async def _send_in_slices(message: Message, send: Send) -> None:
    body = message.get("body", b"")
    if message["type"] != "http.response.body" or len(body) <= SLICE_BYTES:
        await send(message)
        return
    more_after = message.get("more_body", False)
    view = memoryview(body)
    for start in range(0, len(body), SLICE_BYTES):
        last = start + SLICE_BYTES >= len(body)
        await send({"type": "http.response.body", "body": bytes(view[start:start + SLICE_BYTES]),
                    "more_body": more_after or not last})


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
