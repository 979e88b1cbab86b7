"""Clients that stall the server: half-sent requests, stalled bodies, unread answers, too
many connections. A real `serve` with short time-outs, and raw sockets on loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Server, poll_until, start_server, submit

pytestmark = pytest.mark.slow

HEADER_SECONDS = 1.0
BODY_IDLE_SECONDS = 1.0
WRITE_STALL_SECONDS = 1.5
MAX_CONNECTIONS = 24
# How late after its time-out a connection may still be closed (a loaded machine).
SLACK = 3.0


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("connections"), "--workers", "0", env={
        "GENAI_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_SECONDS),
        "GENAI_JOBS_HTTP_BODY_IDLE_TIMEOUT_SECONDS": str(BODY_IDLE_SECONDS),
        "GENAI_JOBS_HTTP_WRITE_STALL_TIMEOUT_SECONDS": str(WRITE_STALL_SECONDS),
        "GENAI_JOBS_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS)})
    try:
        yield running
    finally:
        running.service.terminate()
        running.service.close()


def connect(api: Server, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting, so that the window starts small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(HEADER_SECONDS + SLACK + 5)
    sock.connect(("127.0.0.1", int(api.url.rsplit(":", 1)[1])))
    return sock


def read_until_closed(sock: socket.socket, limit: int = 10_000_000) -> bytes:
    """Everything the server sends until it closes; a reset ends it too."""
    parts: list[bytes] = []
    received = 0
    try:
        while received < limit:  # bounded by `limit` and by the socket's time-out
            part = sock.recv(65536)
            if not part:
                break
            parts.append(part)
            received += len(part)
    except ConnectionResetError:
        pass
    return b"".join(parts)


def closed_after(sock: socket.socket) -> tuple[float, bytes]:
    started = time.monotonic()
    answer = read_until_closed(sock)
    return time.monotonic() - started, answer


def status_is_served(api: Server) -> None:
    with httpx.Client(base_url=api.url, timeout=5) as fresh:
        assert fresh.get("/healthz").status_code == 200


def test_a_half_sent_request_head_is_answered_408_and_closed_in_time(api: Server) -> None:
    with connect(api) as sock:
        sock.sendall(b"GET /healthz HTT")
        waited, answer = closed_after(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"not sent in time" in answer
    assert HEADER_SECONDS * 0.8 <= waited <= HEADER_SECONDS + SLACK
    status_is_served(api)


def test_a_connection_that_sends_nothing_is_closed_in_time(api: Server) -> None:
    with connect(api) as sock:
        waited, answer = closed_after(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert waited <= HEADER_SECONDS + SLACK


def test_a_head_dripped_a_byte_at_a_time_is_still_closed_at_its_deadline(api: Server) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(api) as sock:
        started = time.monotonic()
        sent = drip(sock, request, gap=0.1)
        stopped = time.monotonic() - started
    assert sent < len(request), "the whole head was dripped without the server closing"
    assert stopped <= HEADER_SECONDS + SLACK


def drip(sock: socket.socket, data: bytes, gap: float) -> int:
    """Send `data` a byte at a time; how many were sent before the server closed."""
    for sent, byte in enumerate(data):  # bounded by len(data)
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return sent
        time.sleep(gap)
    return len(data)


def test_a_stalled_body_is_closed_and_nothing_is_stored(api: Server) -> None:
    with api.client() as client:
        before = client.get("/api/v2/genai/jobs/").json()["totalCount"]
    body = b'{"jobType": "diagnostics.sleep", "payload": {"seconds": 1}}'
    with connect(api) as sock:
        sock.sendall(b"POST /api/v2/genai/jobs/ HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + api.admin_token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:20])
        waited, _ = closed_after(sock)
    assert BODY_IDLE_SECONDS * 0.8 <= waited <= BODY_IDLE_SECONDS + SLACK
    with api.client() as client:
        assert client.get("/api/v2/genai/jobs/").json()["totalCount"] == before


def test_a_slow_but_steady_body_is_not_cut(api: Server) -> None:
    body = b'{"jobType": "diagnostics.sleep", "payload": {"seconds": 1}, "description": "slow"}'
    with connect(api) as sock:
        sock.sendall(b"POST /api/v2/genai/jobs/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Authorization: Bearer " + api.admin_token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for first in range(0, len(body), 20):  # each part well inside the idle time-out
            time.sleep(BODY_IDLE_SECONDS * 0.5)
            sock.sendall(body[first:first + 20])
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:200]


def test_a_long_poll_is_not_cut_by_the_client_time_outs(api: Server) -> None:
    with api.client() as client:
        job_id = submit(client, "diagnostics.sleep", {"seconds": 1})
        started = time.monotonic()
        held = client.get(f"/api/v2/genai/status/{job_id}/",
                          params={"waitSeconds": int(HEADER_SECONDS + BODY_IDLE_SECONDS + 2)})
    assert held.status_code == 200
    assert time.monotonic() - started >= HEADER_SECONDS + BODY_IDLE_SECONDS + 1


def test_an_answer_left_unread_is_dropped_and_others_are_served(api: Server) -> None:
    # A page of ~9 MB (no worker runs these jobs): more than the kernel's buffers on
    # both ends of a loopback connection (4 MB at most each way here) hold.
    tenant = api.make_token("big-pages")
    with api.client(tenant) as client:
        for _ in range(10):
            submit(client, "test.sync_sleep", {"seconds": 1, "record": "x" * 900_000})
        size = len(client.get("/api/v2/genai/jobs/", params={"limit": 10}).content)
    with connect(api, receive_buffer=4096) as sock:
        sock.sendall(f"GET /api/v2/genai/jobs/?limit=10 HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {tenant}\r\n\r\n".encode())
        time.sleep(WRITE_STALL_SECONDS + SLACK)  # read nothing meanwhile
        status_is_served(api)
        sock.settimeout(5)
        received = read_until_closed(sock)
    assert len(received) < size  # the server gave up on it before the end


def test_connections_over_the_limit_are_refused_with_503_at_once(tmp_path: Path) -> None:
    limit = 4
    server = start_server(tmp_path, "--workers", "0", env={
        "GENAI_JOBS_HTTP_MAX_CONNECTIONS": str(limit),
        "GENAI_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": "30"})
    try:
        idle = [connect(server) for _ in range(limit)]
        try:
            # The server counts them once it has accepted them.
            def refused() -> bytes | None:
                with connect(server) as extra:
                    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = read_until_closed(extra)
                return answer if answer.startswith(b"HTTP/1.1 503 ") else None

            answer = poll_until(refused, 10, interval=0.1, what="a 503 over the limit")
            assert b"too many connections" in answer
            assert b"retry-after: 1" in answer.lower()
        finally:
            for sock in idle:
                sock.close()
        poll_until(lambda: _served(server), 10, interval=0.1, what="service once they left")
        log = server.service.output()
        assert log.count("refused a connection") == 1  # rate-limited, however many
    finally:
        server.service.close()


def _served(server: Server) -> bool:
    try:
        status_is_served(server)
    except (AssertionError, httpx.HTTPError):
        return False
    return True


def test_time_outs_are_logged_once_per_interval_not_once_per_connection(api: Server) -> None:
    before = api.service.output().count("closed a connection: a request's head")
    socks = [connect(api) for _ in range(8)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HT")
        for sock in socks:
            read_until_closed(sock)
    finally:
        for sock in socks:
            sock.close()
    assert api.service.output().count("closed a connection: a request's head") - before <= 1
