"""Expensive requests take turns (api/admission.py), through a real server on both
stores: big pages and uploads beyond their slots wait, and past the wait they are a
503 with Retry-After that stores nothing, while status polls never wait."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from genai_jobs.api.admission import RATE_BURST_SECONDS
from tests.pg_support import scratch_store
from tests.support import Server, running_server, submit

API = "/api/v2/genai"
DATASETS = "/api/v2/datasets"
JOBS = 150
CONCURRENT = 24


def serve(kind: str, tmp: Path, **settings: str) -> Iterator[Server]:
    env = {f"GENAI_JOBS_{name.upper()}": value for name, value in settings.items()}
    with scratch_store(kind) as url, running_server(
            tmp, "--workers", "0", env=env, database_url=url) as running:
        with running.client() as client:
            for _ in range(JOBS):
                submit(client, "diagnostics.sleep", {"seconds": 0})
        yield running


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def no_queue(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One big page and one upload at a time, and no waiting for a turn."""
    yield from serve(request.param, tmp_path_factory.mktemp(f"noqueue-{request.param}"),
                     max_concurrent_big_pages="1", max_concurrent_uploads="1",
                     busy_queue_seconds="0")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def one_at_a_time(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One big page and one upload at a time; the others wait up to 30 s."""
    yield from serve(request.param, tmp_path_factory.mktemp(f"queue-{request.param}"),
                     max_concurrent_big_pages="1", max_concurrent_uploads="1")


def at_once(calls: Sequence[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """The calls released at once from their own threads, answers in their order."""
    start = threading.Barrier(len(calls), timeout=30)

    def released(call: Callable[[], httpx.Response]) -> httpx.Response:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(released, calls))


def together(count: int, call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """`count` times the same call, released at once."""
    return at_once([call] * count)


def big_page(api: Server, limit: int = 1000, offset: int = 0,
             token: str | None = None) -> Callable[[], httpx.Response]:
    def call() -> httpx.Response:
        with api.client(token, timeout=60) as client:
            return client.get(f"{API}/jobs/", params={"limit": limit, "offset": offset})
    return call


def upload(api: Server, size: int) -> Callable[[], httpx.Response]:
    line = b"Retrieval works on chunks of text; this sentence is one of many.\n"
    text = line * (size // len(line))

    def call() -> httpx.Response:
        with api.client(timeout=120) as client:
            return client.post(f"{DATASETS}/fromFile/",
                               files={"file": ("notes.txt", text, "text/plain")})
    return call


def assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert "busy" in response.json()["detail"]


def test_big_pages_past_their_slots_are_refused_and_polls_still_answered(
        no_queue: Server) -> None:
    with no_queue.client() as client:
        listing = client.get(f"{API}/jobs/", params={"limit": 1}).json()
    some_job, stored = listing["data"][0]["statusId"], listing["totalCount"]
    # Each for another offset: none can share another's reading (api/shared_pages.py).
    answers = at_once([big_page(no_queue, offset=number) for number in range(CONCURRENT)])
    with no_queue.client() as client:
        polls = [client.get(f"{API}/status/{some_job}/") for _ in range(20)]
    codes = sorted({answer.status_code for answer in answers})
    assert codes == [200, 503], codes
    for offset, answer in enumerate(answers):
        if answer.status_code == 200:
            assert len(answer.json()["data"]) == stored - offset
        else:
            assert_busy(answer)
    assert all(poll.status_code == 200 for poll in polls)
    # Small pages never wait for a slot.
    small = together(CONCURRENT, big_page(no_queue, limit=100))
    assert {answer.status_code for answer in small} == {200}
    metrics = httpx.get(f"{no_queue.url}/metrics", timeout=10).text
    refused = re.search(r'genai_jobs_heavy_requests_refused_total\{kind="page"\} (\S+)', metrics)
    assert refused is not None
    assert float(refused.group(1)) >= 1


def test_big_pages_wait_their_turn_instead_of_failing(one_at_a_time: Server) -> None:
    answers = together(CONCURRENT, big_page(one_at_a_time))
    assert [answer.status_code for answer in answers] == [200] * CONCURRENT
    assert all(len(answer.json()["data"]) == JOBS for answer in answers)


def test_identical_big_pages_waiting_together_are_read_once_each_tenant_its_own(
        one_at_a_time: Server) -> None:
    other = one_at_a_time.make_token("shared-pages-other")
    with one_at_a_time.client(other) as client:
        theirs = {submit(client, "diagnostics.sleep", {"seconds": 0}) for _ in range(3)}
    with one_at_a_time.client() as client:
        everything = client.get(f"{API}/jobs/", params={"limit": 1000}).json()["totalCount"]

    answers = at_once([big_page(one_at_a_time, token=other if index % 2 else None)
                       for index in range(2 * CONCURRENT)])
    for index, answer in enumerate(answers):
        assert answer.status_code == 200
        listed = {item["statusId"] for item in answer.json()["data"]}
        if index % 2:
            assert listed == theirs  # never the admin's page, though the URL is the same
        else:
            assert len(listed) == everything
            assert theirs <= listed
    metrics = httpx.get(f"{one_at_a_time.url}/metrics", timeout=10).text
    shared = re.search(r"^genai_jobs_big_pages_shared_total (\S+)", metrics, re.MULTILINE)
    assert shared is not None
    assert float(shared.group(1)) >= 1


def test_uploads_past_their_slots_are_refused_and_store_nothing(no_queue: Server) -> None:
    with no_queue.client() as client:
        before = client.get(f"{DATASETS}/").json()["totalCount"]
    answers = together(6, upload(no_queue, 8_000_000))
    accepted = [answer for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code != 202]
    assert accepted, [answer.text for answer in answers]
    assert refused, "six uploads whose bodies end together: one slot cannot take them all"
    for answer in refused:
        assert_busy(answer)
    with no_queue.client() as client:
        after = client.get(f"{DATASETS}/").json()["totalCount"]
    assert after - before == len(accepted)


def test_uploads_wait_their_turn_instead_of_failing(one_at_a_time: Server) -> None:
    answers = together(4, upload(one_at_a_time, 2_000_000))
    assert [answer.status_code for answer in answers] == [202] * 4


def memory_mib(pid: int, field: str) -> float:
    """A memory figure of a process's /proc status: `RssAnon` (anonymous memory now),
    `VmRSS` (all of it now) or `VmHWM` (the peak since the last reset)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc: not Linux?")


def test_an_upload_leaves_no_copy_of_itself_in_memory(tmp_path: Path) -> None:
    size = 64_000_000
    with running_server(tmp_path, "--workers", "0",
                       env={"GENAI_JOBS_DATASET_MAX_FILE_BYTES": str(2 * size)}) as server:
        assert server.service.process is not None
        pid = server.service.process.pid
        upload(server, 1_000_000)()  # the first upload's one-off costs (imports, caches)
        before = memory_mib(pid, "RssAnon")
        assert upload(server, size)().status_code == 202
        kept = memory_mib(pid, "RssAnon") - before
    # SQLite's prepared statement used to keep the whole file (+61 MiB here).
    assert kept < 25, f"the server kept {kept:.0f} MiB after a {size // 10**6} MB upload"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upload_bodies_are_taken_in_at_their_rate_while_polls_go_on(
        kind: str, tmp_path: Path) -> None:
    rate, size = 4_000_000, 6_000_000
    env = {"GENAI_JOBS_UPLOAD_BYTES_PER_SECOND": str(rate)}
    with scratch_store(kind) as url, running_server(
            tmp_path, "--workers", "0", env=env, database_url=url) as server:
        with server.client() as client:
            job = submit(client, "diagnostics.sleep", {"seconds": 0})
        answers: list[httpx.Response] = []
        sending = threading.Thread(target=lambda: answers.append(upload(server, size)()))
        started = time.monotonic()
        sending.start()
        polls: list[tuple[int, float]] = []
        with server.client() as client:
            for _ in range(2_000):  # and stops when the upload is answered
                if not sending.is_alive():
                    break
                asked = time.monotonic()
                status = client.get(f"{API}/status/{job}/").status_code
                polls.append((status, time.monotonic() - asked))
                time.sleep(0.02)
        sending.join(timeout=60)
        took = time.monotonic() - started
    assert [answer.status_code for answer in answers] == [202]
    # Nothing but the rate can make it this slow, on a loopback connection.
    least = (size - rate * RATE_BURST_SECONDS) / rate
    assert took >= least * 0.95, f"{size:,} bytes taken in {took:.2f} s at {rate:,} a second"
    assert len(polls) >= 20
    assert {status for status, _ in polls} == {200}
    slowest = max(seconds for _, seconds in polls)
    assert slowest < 1.0, f"a status poll took {slowest:.2f} s beside the upload"


def test_a_large_text_upload_is_stored_without_holding_it_in_memory(tmp_path: Path) -> None:
    """On SQLite a text document goes from its temporary file to the store a slice at a
    time: the server's peak memory barely moves, whatever the file's size."""
    size = 64_000_000
    env = {"GENAI_JOBS_DATASET_MAX_FILE_BYTES": str(2 * size),
           "GENAI_JOBS_UPLOAD_BYTES_PER_SECOND": "0"}
    with running_server(tmp_path, "--workers", "0", env=env) as server:
        assert server.service.process is not None
        pid = server.service.process.pid
        upload(server, 2_000_000)()  # the first large upload's one-off costs
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from now
        before = memory_mib(pid, "VmRSS")
        assert upload(server, size)().status_code == 202
        peak = memory_mib(pid, "VmHWM") - before
    assert peak < 40, f"a {size // 10**6} MB upload raised the server's peak by {peak:.0f} MiB"
