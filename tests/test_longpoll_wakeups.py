"""Many long-polls on running jobs stay cheap: a status long-poll is not woken by
progress, and the long-polls of one job share their reads of it. Counted through the
server's own /metrics, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from genai_jobs.client import Client, JobInfo
from tests.pg_support import scratch_store
from tests.support import Server, poll_until, running_server, submit, wait_for_status

pytestmark = pytest.mark.slow

API = "/api/v2/genai"
WAITERS = 20
# diagnostics.sleep reports progress about once a second.
SLEEP_SECONDS = 8


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with scratch_store(request.param) as url, running_server(
            tmp_path_factory.mktemp(f"longpoll-{request.param}"), "--workers", "1",
            database_url=url) as running:
        yield running


def metric(api: Server, name: str) -> float:
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def running_job(api: Server) -> str:
    with api.client() as client:
        job_id = submit(client, "diagnostics.sleep", {"seconds": SLEEP_SECONDS})
        wait_for_status(client, job_id, "RUNNING", timeout=20)
    return job_id


def hold(api: Server, path: str, seconds: int) -> dict[str, Any]:
    with api.client(timeout=seconds + 30) as client:
        response = client.get(path, params={"waitSeconds": seconds})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


def all_waiting(api: Server) -> None:
    poll_until(lambda: metric(api, "genai_jobs_waiting_requests") >= WAITERS, 20,
               interval=0.05, what=f"{WAITERS} waiting long-polls")


def test_status_long_polls_are_not_woken_by_progress(api: Server) -> None:
    job_id = running_job(api)
    with ThreadPoolExecutor(max_workers=WAITERS) as pool:
        answers = [pool.submit(hold, api, f"{API}/status/{job_id}/", 4)
                   for _ in range(WAITERS)]
        all_waiting(api)
        woken, read = (metric(api, "genai_jobs_longpoll_wakeups_total"),
                       metric(api, "genai_jobs_longpoll_reads_total"))
        results = [answer.result() for answer in answers]
    assert {result["status"] for result in results} == {"RUNNING"}  # held to the end
    with api.client() as client:  # the job did report progress meanwhile
        assert client.get(f"{API}/jobs/{job_id}/").json()["progress"] > 0
    assert metric(api, "genai_jobs_longpoll_wakeups_total") - woken == 0
    assert metric(api, "genai_jobs_longpoll_reads_total") - read == 0


def test_the_long_polls_of_one_job_share_their_reads(api: Server) -> None:
    job_id = running_job(api)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WAITERS) as pool:
        answers = [pool.submit(hold, api, f"{API}/jobs/{job_id}/", 20)
                   for _ in range(WAITERS)]
        all_waiting(api)
        read = metric(api, "genai_jobs_longpoll_reads_total")
        results = [answer.result() for answer in answers]
    # Each answered at the next progress report, long before its 20 s.
    assert time.monotonic() - started < 15
    assert all(result["status"] in ("RUNNING", "COMPLETED") for result in results)
    # Woken together by one change, the twenty took one read of it (two when a second
    # change came while the first read was on its way), not twenty.
    assert metric(api, "genai_jobs_longpoll_reads_total") - read <= 3


def test_a_long_poll_whose_client_left_stops_waiting(api: Server) -> None:
    job_id = running_job(api)
    host, port = api.url.removeprefix("http://").split(":")
    sockets = []
    try:
        # The status route's: progress does not answer them, so all stay waiting until
        # they leave (the jobs route's share the same wait, but progress answers them).
        for _ in range(WAITERS):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(f"GET {API}/status/{job_id}/?waitSeconds=50 HTTP/1.1\r\n"
                         f"Host: {host}\r\nAuthorization: Bearer {api.admin_token}\r\n\r\n"
                         .encode())
            sockets.append(sock)
        all_waiting(api)
    finally:
        for sock in sockets:
            sock.close()
    # Gone within moments of their clients, not at the end of their 50 s, nor at the
    # job's end 8 s from its start.
    poll_until(lambda: metric(api, "genai_jobs_waiting_requests") == 0, 3, interval=0.05,
               what="the waiters of closed connections to stop")


def test_a_long_poll_with_the_last_etag_seen_misses_no_change(api: Server) -> None:
    job_id = running_job(api)
    with api.client() as client:
        path = f"{API}/jobs/{job_id}/"
        first = client.get(path).headers["ETag"]
        assert first.startswith('"')
        # The job reports progress while the client is busy elsewhere...
        poll_until(lambda: client.get(path).headers["ETag"] != first, 10,
                   what="a progress report")
        # ...so the poll that names what it saw is answered at once, not at the next change.
        started = time.monotonic()
        caught_up = client.get(path, params={"waitSeconds": 20},
                               headers={"If-None-Match": first})
        assert time.monotonic() - started < 0.5
        assert caught_up.headers["ETag"] != first
        # The status route's tag covers what it shows: progress leaves it alone, so a poll
        # naming the current one is held; a stale one is answered at once.
        status_path = f"{API}/status/{job_id}/"
        current = client.get(status_path).headers["ETag"]
        started = time.monotonic()
        held = client.get(status_path, params={"waitSeconds": 2},
                          headers={"If-None-Match": current})
        assert time.monotonic() - started >= 1.9
        assert held.headers["ETag"] == current
        started = time.monotonic()
        client.get(status_path, params={"waitSeconds": 20},
                   headers={"If-None-Match": '"not-what-it-is"'})
        assert time.monotonic() - started < 0.5


def test_our_clients_wait_is_answered_at_once_after_a_slow_callback(api: Server) -> None:
    job_id = running_job(api)
    gaps: list[float] = []
    returned_at: list[float] = []

    def slow(job: JobInfo) -> None:
        if returned_at:
            gaps.append(time.monotonic() - returned_at[-1])
        time.sleep(1.2)  # a busy caller: the job reports progress meanwhile
        returned_at.append(time.monotonic())

    with Client(api.url, token=api.admin_token) as client:
        done = client.wait(job_id, timeout=60, on_change=slow)
    assert done.status.value == "COMPLETED"
    # Each next answer came as soon as the caller was back, not at the job's next report.
    assert len(gaps) >= 3
    assert max(gaps) < 0.3, gaps
