"""Big pages take turns (api/shared_pages.py): who shares a reading, who gets a fresh
one, who waits too long, and what each member is sent."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from genai_jobs.api.shared_pages import SLICE_BYTES, Pace, SharedPages


def page_request(token: str = "a", query: bytes = b"limit=1000") -> Scope:
    return {"type": "http", "method": "GET", "scheme": "http", "server": ("127.0.0.1", 80),
            "root_path": "", "path": "/api/v2/genai/jobs/", "query_string": query,
            "headers": [(b"host", b"x"), (b"authorization", f"Bearer {token}".encode())]}


class Reader:
    """An application answering with the number of its reading and the request's token,
    each reading taking until `release` is set."""

    def __init__(self, body_bytes: int = 10) -> None:
        self.release = asyncio.Event()
        self.readings = 0
        self.body_bytes = body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["body"] == b""
        self.readings += 1
        number = self.readings
        await self.release.wait()
        token = dict(scope["headers"])[b"authorization"]
        body = f"{number} {token.decode()} ".encode().ljust(self.body_bytes, b".")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def shared(app: Reader | object, queue_seconds: float = 30.0,
           pace: Pace | None = None) -> SharedPages:
    return SharedPages(app, slots=1, queue_seconds=queue_seconds, pace=pace)  # type: ignore[arg-type]


class Member:
    def __init__(self, pages: SharedPages, scope: Scope, reads: bool = True) -> None:
        self.sent: list[Message] = []
        self.reading = asyncio.Event()  # a client that reads its answer only once set
        if reads:
            self.reading.set()
        self.task = asyncio.create_task(pages(scope, self._send))

    async def _send(self, message: Message) -> None:
        await self.reading.wait()
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_waiting_together_share_one_reading_and_latecomers_get_a_fresh_one(
        ) -> None:
    reader = Reader()
    pages = shared(reader)
    first = Member(pages, page_request())
    await settle()  # the first reading has started: its group is closed
    assert reader.readings == 1
    waiting = [Member(pages, page_request()) for _ in range(5)]
    other_token = Member(pages, page_request("b"))
    other_query = Member(pages, page_request(query=b"limit=999"))
    await settle()
    reader.release.set()
    await asyncio.gather(first.task, *(m.task for m in waiting), other_token.task,
                         other_query.task)
    assert first.body.startswith(b"1 Bearer a")
    # The five waited together for the second reading, which started after they came.
    assert {m.body for m in waiting} == {waiting[0].body}
    assert waiting[0].body.startswith(b"2 Bearer a")
    assert other_token.body.startswith(b"3 Bearer b")
    assert other_query.body.startswith(b"4 Bearer a")
    assert reader.readings == 4
    # The queue drained and its reader left: a later page still gets read.
    later = Member(pages, page_request())
    await later.task
    assert later.body.startswith(b"5 ")


async def test_a_group_that_waits_past_the_queue_time_is_503_and_nothing_read() -> None:
    reader = Reader()
    pages = shared(reader, queue_seconds=0.05)
    first = Member(pages, page_request())
    await settle()
    late = [Member(pages, page_request("b")) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*(m.task for m in late)), timeout=5)
    for member in late:
        assert member.status == 503
        assert dict(member.sent[0]["headers"])[b"retry-after"] == b"1"
        assert b"busy" in member.body
    assert reader.readings == 1
    reader.release.set()
    await first.task
    assert first.status == 200


async def test_no_reading_runs_ahead_of_two_answers_not_yet_sent() -> None:
    reader = Reader()
    reader.release.set()
    pages = shared(reader)
    slow = [Member(pages, page_request(token), reads=False) for token in "abc"]
    await settle()
    await asyncio.sleep(0.05)
    assert reader.readings == 2  # the third waits for one of the two to be sent
    slow[0].reading.set()
    await asyncio.wait_for(slow[0].task, timeout=5)
    await settle()
    assert reader.readings == 3
    for member in slow[1:]:
        member.reading.set()
    await asyncio.wait_for(asyncio.gather(*(m.task for m in slow)), timeout=5)
    # Members that all left before their reading do not hold an answer's place.
    reader.release.clear()
    gone = [Member(pages, page_request(token)) for token in "dez"]
    await settle()
    assert reader.readings == 4  # d is being read, e and z wait
    for member in gone:
        member.task.cancel()
    await asyncio.gather(*(m.task for m in gone), return_exceptions=True)
    reader.release.set()
    after = [Member(pages, page_request(token)) for token in "fgh"]
    await asyncio.wait_for(asyncio.gather(*(m.task for m in after)), timeout=5)
    assert [m.body[:1] for m in after] == [b"7", b"8", b"9"]


async def test_a_member_that_goes_away_leaves_the_others_their_answer() -> None:
    reader = Reader()
    pages = shared(reader)
    members = [Member(pages, page_request()) for _ in range(3)]
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

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("the store went away")

    pages = shared(failing)
    members = [Member(pages, page_request()) for _ in range(3)]
    await asyncio.gather(*(m.task for m in members))
    for member in members:
        assert member.status == 500
        assert member.body == b'{"detail":"internal error"}'
    assert calls == 1
    # Logged once, not per member.
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == ["the store went away"]
    later = Member(pages, page_request())
    await later.task
    assert calls == 2


async def test_an_error_the_application_answered_is_sent_as_it_answered() -> None:
    async def answered_then_raised(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"its own answer"})
        raise RuntimeError("re-raised after answering, as Starlette does")

    member = Member(shared(answered_then_raised), page_request())
    await member.task
    assert member.body == b"its own answer"


async def test_a_big_answer_goes_out_in_slices_at_the_pace_given() -> None:
    paced: list[int] = []

    async def pace(count: int) -> None:
        paced.append(count)

    reader = Reader(body_bytes=3 * SLICE_BYTES + 17)
    reader.release.set()
    pages = shared(reader, pace=pace)
    members = [Member(pages, page_request()) for _ in range(2)]
    await asyncio.gather(*(m.task for m in members))
    for member in members:
        bodies = [m for m in member.sent if m["type"] == "http.response.body"]
        assert [len(m["body"]) for m in bodies] == [SLICE_BYTES] * 3 + [17]
        assert [m["more_body"] for m in bodies] == [True, True, True, False]
        assert member.body.startswith(b"1 Bearer a")
    assert paced == [SLICE_BYTES, SLICE_BYTES, SLICE_BYTES, 17] * 2
