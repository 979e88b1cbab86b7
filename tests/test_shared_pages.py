"""Identical big pages waiting together are read once (api/shared_pages.py): who
shares a reading, who gets a fresh one, and what each member is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from starlette.types import Message, Receive, Scope, Send

from genai_jobs.api.shared_pages import SLICE_BYTES, SharedPages


def page_request(token: str = "a", query: bytes = b"limit=1000") -> Scope:
    return {"type": "http", "method": "GET", "scheme": "http", "server": ("127.0.0.1", 80),
            "root_path": "", "path": "/api/v2/genai/jobs/", "query_string": query,
            "headers": [(b"host", b"x"), (b"authorization", f"Bearer {token}".encode())]}


class Reader:
    """Answers with the number of its reading and the request's token, one reading at
    a time (the slot), each taking until `release` is set."""

    def __init__(self, body_bytes: int = 10) -> None:
        self.slot = asyncio.Lock()
        self.release = asyncio.Event()
        self.readings = 0
        self.body_bytes = body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       started: Callable[[], None]) -> None:
        async with self.slot:
            started()
            assert (await receive())["body"] == b""
            self.readings += 1
            number = self.readings
            await self.release.wait()
            token = dict(scope["headers"])[b"authorization"]
            body = f"{number} {token.decode()} ".encode().ljust(self.body_bytes, b".")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})


class Member:
    def __init__(self, shared: SharedPages, scope: Scope) -> None:
        self.sent: list[Message] = []
        self.task = asyncio.create_task(shared(scope, self._send))

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_waiting_together_share_one_reading_and_latecomers_get_a_fresh_one(
        ) -> None:
    reader = Reader()
    shared = SharedPages(reader)
    first = Member(shared, page_request())
    await settle()  # the first reading has started: its group is closed
    waiting = [Member(shared, page_request()) for _ in range(5)]
    other_token = Member(shared, page_request("b"))
    other_query = Member(shared, page_request(query=b"limit=999"))
    await settle()
    reader.release.set()
    await asyncio.gather(first.task, *(m.task for m in waiting), other_token.task,
                         other_query.task)
    assert first.body.startswith(b"1 Bearer a")
    # The five waited together for the second reading, which started after they came.
    assert {m.body.split(b" ")[0] for m in waiting} == {b"2"}
    assert len({m.body for m in waiting}) == 1
    assert b"Bearer b" in other_token.body
    assert {other_token.body[:1], other_query.body[:1]} == {b"3", b"4"}
    assert reader.readings == 4


async def test_a_member_that_goes_away_leaves_the_others_their_answer() -> None:
    reader = Reader()
    shared = SharedPages(reader)
    members = [Member(shared, page_request()) for _ in range(3)]
    await settle()
    members[0].task.cancel()
    reader.release.set()
    await asyncio.gather(members[1].task, members[2].task)
    assert members[1].body == members[2].body
    assert members[1].body.startswith(b"1 ")
    with pytest.raises(asyncio.CancelledError):
        await members[0].task


async def test_a_reading_that_fails_unanswered_is_one_500_and_the_next_reads_again(
        caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def failing(scope: Scope, receive: Receive, send: Send,
                      started: Callable[[], None]) -> None:
        nonlocal calls
        calls += 1
        started()
        await asyncio.sleep(0)
        raise RuntimeError("the store went away")

    shared = SharedPages(failing)
    members = [Member(shared, page_request()) for _ in range(3)]
    await asyncio.gather(*(m.task for m in members))
    for member in members:
        assert member.sent[0]["status"] == 500
        assert member.body == b'{"detail":"internal error"}'
    assert calls == 1
    # Logged once, not per member.
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == ["the store went away"]
    later = Member(shared, page_request())
    await later.task
    assert calls == 2


async def test_an_error_the_application_answered_is_sent_as_it_answered() -> None:
    async def answered_then_raised(scope: Scope, receive: Receive, send: Send,
                                   started: Callable[[], None]) -> None:
        started()
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"its own answer"})
        raise RuntimeError("re-raised after answering, as Starlette does")

    member = Member(SharedPages(answered_then_raised), page_request())
    await member.task
    assert member.body == b"its own answer"


async def test_answers_go_out_at_the_pace_given() -> None:
    paced: list[int] = []

    async def pace(count: int) -> None:
        paced.append(count)

    reader = Reader(body_bytes=2 * SLICE_BYTES + 5)
    reader.release.set()
    shared = SharedPages(reader, pace)
    members = [Member(shared, page_request()) for _ in range(3)]
    await asyncio.gather(*(m.task for m in members))
    assert paced == [SLICE_BYTES, SLICE_BYTES, 5] * 3


async def test_a_big_answer_is_sent_in_slices_that_add_up_to_it() -> None:
    reader = Reader(body_bytes=3 * SLICE_BYTES + 17)
    reader.release.set()
    shared = SharedPages(reader)
    members = [Member(shared, page_request()) for _ in range(2)]
    await asyncio.gather(*(m.task for m in members))
    for member in members:
        bodies = [m for m in member.sent if m["type"] == "http.response.body"]
        assert len(bodies) == 4
        assert all(len(m["body"]) <= SLICE_BYTES for m in bodies)
        assert [m["more_body"] for m in bodies] == [True, True, True, False]
        assert len(member.body) == 3 * SLICE_BYTES + 17
        assert member.body.startswith(b"1 Bearer a")
