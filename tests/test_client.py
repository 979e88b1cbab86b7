"""`genai_jobs.client` against a real server process (the `server` fixture).

The few tests at the top need no server: they pin the I/O-free parts of the
client (the wait loop's arithmetic, the reading of odd answers).
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from genai_jobs.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    Conflict,
    JobInfo,
    JobState,
    NotFound,
    ServerError,
    TransportError,
    UnexpectedResponse,
    ValidationFailed,
    WaitTimeout,
)
from genai_jobs.client._base import MAX_POLL_SECONDS, BaseClient, WaitLoop

SLEEP = "diagnostics.sleep"
# Generous bounds: these tests check the mechanism, not the machine's speed.
QUICK_SECONDS = 5.0


# -- no server needed ----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _job(status: JobState, progress: float | None = None) -> JobInfo:
    return JobInfo.model_validate(
        {
            "code": 0,
            "created": "2024-08-24T14:15:22Z",
            "status": status.value,
            "statusId": "e900225c-0629-4e96-be6e-86a17a309645",
            "statusType": SLEEP,
            "jobType": SLEEP,
            "payload": {"seconds": 1},
            "progress": progress,
            "someFutureField": "ignored",
        }
    )


def test_wait_loop_polls_for_the_remaining_time_rounded_up_and_capped() -> None:
    clock = FakeClock()
    loop = WaitLoop(BaseClient("http://127.0.0.1:1", "t", 10), "id", 100.0, None, clock)
    assert dict(loop.next_call().params) == {"waitSeconds": str(MAX_POLL_SECONDS)}
    clock.now += 99.6
    assert dict(loop.next_call().params) == {"waitSeconds": "1"}
    unlimited = WaitLoop(BaseClient("http://127.0.0.1:1", "t", 10), "id", None, None, clock)
    assert dict(unlimited.next_call().params) == {"waitSeconds": str(MAX_POLL_SECONDS)}


def test_wait_loop_reports_each_new_version_once_and_stops_at_terminal() -> None:
    seen: list[JobInfo] = []
    loop = WaitLoop(BaseClient("http://127.0.0.1:1", "t", 10), "id", None, seen.append)
    running = _job(JobState.RUNNING, 0.5)
    assert not loop.done(running)
    assert not loop.done(running)
    assert loop.done(_job(JobState.COMPLETED, 1.0))
    assert [job.status for job in seen] == [JobState.RUNNING, JobState.COMPLETED]


def test_wait_loop_times_out_with_the_last_job() -> None:
    clock = FakeClock()
    loop = WaitLoop(BaseClient("http://127.0.0.1:1", "t", 10), "id", 2.0, None, clock)
    assert not loop.done(_job(JobState.INITIALIZED))
    clock.now += 2.0
    with pytest.raises(WaitTimeout, match="still RUNNING after 2s") as caught:
        loop.done(_job(JobState.RUNNING, 0.25))
    assert caught.value.job.progress == 0.25


def test_an_answer_that_is_not_the_api_is_called_so() -> None:
    base = BaseClient("http://127.0.0.1:1", "t", 10)
    call = base.status_call(uuid4())
    with pytest.raises(UnexpectedResponse, match="is that the right URL"):
        base.read(call, 404, b"<html>nope</html>")
    with pytest.raises(UnexpectedResponse):
        base.read(call, 200, b'{"hello": "world"}')
    # A proxy's page for a failing server is still a server failure.
    with pytest.raises(ServerError, match=r"failed to read the status of job .* \(502\)$"):
        base.read(call, 502, b"<html>Bad Gateway</html>")


def test_a_server_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        Client("127.0.0.1:8080", token="t")


# -- fixtures -------------------------------------------------------------------


class CountingTransport(httpx.HTTPTransport):
    """A real transport that remembers what was sent, to count the long-polls."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


@pytest.fixture(scope="module")
def tenant() -> str:
    return f"client-{uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def token(server: Any, tenant: str) -> str:
    return str(server.make_token(tenant))


@pytest.fixture
def client(server: Any, token: str) -> Iterator[Client]:
    with Client(server.url, token=token) as client:
        yield client


@pytest.fixture
def fresh_client(server: Any) -> Iterator[Client]:
    """A client of a tenant with no jobs yet, for tests that list."""
    with Client(server.url, token=server.make_token(f"list-{uuid4().hex[:8]}")) as client:
        yield client


@pytest.fixture
async def async_client(server: Any, token: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, token=token) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the round trip -------------------------------------------------------------


def test_submit_status_job_round_trip(client: Client, tenant: str) -> None:
    submitted = client.submit(SLEEP, {"seconds": 0}, description="round trip", priority=3)
    assert submitted.status_type == SLEEP
    assert submitted.description == "round trip"
    assert submitted.code == 0
    assert submitted.created.tzinfo is not None

    status = client.status(submitted.status_id)
    assert status.status_id == submitted.status_id
    job = client.job(str(submitted.status_id))
    # The server stores the payload as its model read it, defaults filled in.
    assert (job.job_type, job.payload["seconds"], job.priority) == (SLEEP, 0, 3)
    assert job.tenant == tenant


def test_wait_returns_soon_after_completion_using_the_long_poll(server: Any, token: str) -> None:
    transport = CountingTransport()
    seen: list[JobInfo] = []
    with Client(server.url, token=token, transport=transport) as client:
        submitted = client.submit(SLEEP, {"seconds": 0.5})
        started = time.monotonic()
        job = client.wait(submitted.status_id, timeout=30, on_change=seen.append)
        elapsed = time.monotonic() - started
        returned_at = datetime.now(UTC)

    assert job.status is JobState.COMPLETED
    assert job.result == {"slept": 0.5}
    assert elapsed < QUICK_SECONDS
    assert job.finished_at is not None
    assert returned_at - job.finished_at < timedelta(seconds=1)
    polls = [r for r in transport.requests if "waitSeconds" in r.url.params]
    # Held answers, not a busy loop: one request per change of the job at most.
    assert 1 <= len(polls) <= 6
    assert len(polls) == len(transport.requests) - 1  # the submit, then only polls
    assert seen[-1] == job
    assert all(a != b for a, b in itertools.pairwise(seen))


def test_wait_times_out_with_the_last_job_seen(client: Client) -> None:
    submitted = client.submit(SLEEP, {"seconds": 60})
    try:
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as caught:
            client.wait(submitted.status_id, timeout=0.5)
        assert time.monotonic() - started < QUICK_SECONDS
        assert caught.value.job.status_id == submitted.status_id
        assert not caught.value.job.status.is_terminal
        assert str(submitted.status_id) in str(caught.value)
    finally:
        client.cancel(submitted.status_id)


def test_a_failing_job_ends_in_error_with_its_message(client: Client) -> None:
    submitted = client.submit(SLEEP, {"seconds": 0, "outcome": "error"}, max_attempts=1)
    job = client.wait(submitted.status_id, timeout=30)
    assert job.status is JobState.ERROR
    assert job.code == 1
    assert job.message


def test_cancel_aborts_a_running_job(client: Client) -> None:
    submitted = client.submit(SLEEP, {"seconds": 60})
    cancelled = client.cancel(submitted.status_id)
    assert cancelled.status in (JobState.ABORTED, JobState.RUNNING, JobState.INITIALIZED)
    job = client.wait(submitted.status_id, timeout=30)
    assert job.status is JobState.ABORTED
    assert client.cancel(submitted.status_id).status is JobState.ABORTED  # idempotent


def test_list_filters_and_pages(fresh_client: Client) -> None:
    ids = {fresh_client.submit(SLEEP, {"seconds": 0}).status_id for _ in range(3)}
    for status_id in ids:
        fresh_client.wait(status_id, timeout=30)

    page = fresh_client.list(limit=2)
    assert (page.count, page.total_count, len(page.data)) == (2, 3, 2)
    assert page.next is not None
    assert {job.status_id for job in fresh_client.iter_jobs(limit=2)} == ids

    finished = fresh_client.list(status=[JobState.COMPLETED, "ERROR"], job_type=SLEEP)
    assert {job.status_id for job in finished.data} == ids
    assert fresh_client.list(status="RUNNING").count == 0


def test_job_types_describe_the_sleep_payload(client: Client) -> None:
    types = {job_type.name: job_type for job_type in client.job_types()}
    assert "seconds" in types[SLEEP].payload_schema.get("properties", {})


def test_an_idempotency_key_returns_the_first_job(client: Client) -> None:
    key = uuid4().hex
    first = client.submit(SLEEP, {"seconds": 0}, idempotency_key=key)
    again = client.submit(SLEEP, {"seconds": 0}, idempotency_key=key)
    assert again.status_id == first.status_id
    with pytest.raises(Conflict):
        client.submit(SLEEP, {"seconds": 1}, idempotency_key=key)


# -- errors ---------------------------------------------------------------------


def test_a_bad_token_is_an_authentication_error(server: Any) -> None:
    with (
        Client(server.url, token="not-a-token") as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.status(uuid4())
    assert caught.value.status_code == 401
    assert str(caught.value).startswith(f"the server at {server.url} rejected the token (401): ")
    assert "\n" not in str(caught.value)


def test_an_unknown_id_is_not_found(client: Client) -> None:
    unknown = uuid4()
    with pytest.raises(NotFound) as caught:
        client.status(unknown)
    assert str(caught.value) == f"job {unknown} not found"
    with pytest.raises(NotFound):
        client.job(unknown)
    with pytest.raises(NotFound):
        client.cancel(unknown)


def test_another_tenants_job_is_not_found(server: Any, client: Client) -> None:
    submitted = client.submit(SLEEP, {"seconds": 0})
    with (
        Client(server.url, token=server.make_token("someone-else")) as other,
        pytest.raises(NotFound),
    ):
        other.status(submitted.status_id)


def test_an_invalid_payload_fails_validation_with_its_location(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.submit(SLEEP, {"seconds": 99999})
    assert caught.value.status_code == 422
    assert caught.value.is_about("body", "payload", "seconds")
    assert str(caught.value).startswith("invalid request: body.payload.seconds: ")
    assert isinstance(caught.value.detail, list)


def test_an_unknown_job_type_fails_validation(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.submit("no.such.type", {})
    assert caught.value.is_about("body", "jobType")


def test_an_id_that_is_not_a_uuid_fails_validation(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.status("not-a-uuid")
    assert caught.value.is_about("path", "statusId")


def test_an_id_cannot_reach_another_route(client: Client) -> None:
    # Quoted whole, "../jobs" stays one path segment and matches no route.
    with pytest.raises(NotFound):
        client.status("../../jobs")


def test_aborting_a_completed_job_is_a_conflict(client: Client) -> None:
    submitted = client.submit(SLEEP, {"seconds": 0})
    assert client.wait(submitted.status_id, timeout=30).status is JobState.COMPLETED
    with pytest.raises(Conflict) as caught:
        client.cancel(submitted.status_id)
    assert caught.value.status_code == 409
    assert str(caught.value).startswith(f"cannot cancel job {submitted.status_id} (409): ")


def test_an_unreachable_server_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with Client(url, token="t", timeout=5) as client, pytest.raises(TransportError) as caught:
        client.status(uuid4())
    assert time.monotonic() - started < QUICK_SECONDS
    assert str(caught.value).startswith(f"cannot reach the server at {url}: ")
    assert caught.value.url == url


# -- asyncio --------------------------------------------------------------------


async def test_async_round_trip_and_wait(async_client: AsyncClient) -> None:
    submitted = await async_client.submit(SLEEP, {"seconds": 0.2}, description="async")
    assert (await async_client.status(submitted.status_id)).description == "async"
    assert (await async_client.job(submitted.status_id)).payload["seconds"] == 0.2

    seen: list[JobInfo] = []
    started = time.monotonic()
    job = await async_client.wait(submitted.status_id, timeout=30, on_change=seen.append)
    assert time.monotonic() - started < QUICK_SECONDS
    assert job.status is JobState.COMPLETED
    assert seen[-1] == job

    listed = [job.status_id async for job in async_client.iter_jobs(limit=1)]
    assert submitted.status_id in listed
    assert (await async_client.list(limit=1)).count == 1
    assert SLEEP in {job_type.name for job_type in await async_client.job_types()}


async def test_async_cancel_and_wait_timeout(async_client: AsyncClient) -> None:
    submitted = await async_client.submit(SLEEP, {"seconds": 60})
    with pytest.raises(WaitTimeout):
        await async_client.wait(submitted.status_id, timeout=0)
    await async_client.cancel(submitted.status_id)
    job = await async_client.wait(submitted.status_id, timeout=30)
    assert job.status is JobState.ABORTED


async def test_async_errors(server: Any, async_client: AsyncClient) -> None:
    unknown = UUID(int=1)
    with pytest.raises(NotFound, match=f"job {unknown} not found"):
        await async_client.status(unknown)
    async with AsyncClient(server.url, token="wrong") as client:
        with pytest.raises(AuthenticationError):
            await client.job(unknown)
    async with AsyncClient(f"http://127.0.0.1:{_free_port()}", token="t") as client:
        with pytest.raises(TransportError):
            await client.list()


def _silent_listener() -> socket.socket:
    """A port that accepts connections (the kernel does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def test_a_server_that_never_answers_is_a_transport_error_after_the_timeout() -> None:
    with _silent_listener() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with Client(url, token="t", timeout=0.5) as client, \
                pytest.raises(TransportError, match=r"no answer within 0\.5s"):
            client.status(uuid4())


async def test_async_transport_errors_say_what_failed() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    async with AsyncClient(url, token="t", timeout=5) as client:
        with pytest.raises(TransportError) as caught:
            await client.status(uuid4())
    assert str(caught.value).startswith(f"cannot reach the server at {url}: ")
    assert caught.value.url == url
    with _silent_listener() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        async with AsyncClient(url, token="t", timeout=0.5) as client:
            with pytest.raises(TransportError, match=r"no answer within 0\.5s"):
                await client.status(uuid4())
        assert time.monotonic() - started < QUICK_SECONDS
