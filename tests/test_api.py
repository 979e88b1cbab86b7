"""The HTTP contract (API.md, and the seed for the status route) against a real
`genai-jobs serve`: exact shapes, status codes, headers and state changes.

Most tests use the session `server` (2 in-process workers). Tests that need a
job to stay INITIALIZED use `idle_server`, a server with no worker at all, so
that nothing can claim the job: that is the only deterministic way to hold a
job in INITIALIZED.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from tests.support import Server, poll_until, start_server, submit, wait_for_status

API = "/api/v2/genai"
SLEEP = "diagnostics.sleep"
STATUS_FIELDS = {"code", "created", "description", "message", "status", "statusId", "statusType"}
JOB_FIELDS = STATUS_FIELDS | {
    "jobType", "tenant", "payload", "result", "resultLocation", "progress", "progressMessage",
    "attempts", "maxAttempts", "priority", "startedAt", "finishedAt", "expiresAt", "updatedAt",
}
STATES = {"INITIALIZED", "RUNNING", "COMPLETED", "ERROR", "ABORTED", "EXPIRED"}
TERMINAL = {"COMPLETED", "ERROR", "ABORTED", "EXPIRED"}
TIME_PATTERN = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z\Z")
# "Within a few seconds": generous, these tests check behaviour, not the machine's speed.
FEW_SECONDS = 8.0
MAX_BODY_BYTES = 1_000_000
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_MAX_ATTEMPTS = 20


# -- helpers -------------------------------------------------------------------


# A query parameter the fast paths in front of the framework do not take: a request
# with it goes through the FastAPI route (which ignores it).
ROUTED = {"via": "route"}


def status_path(job_id: str) -> str:
    return f"{API}/status/{job_id}/"


def job_path(job_id: str) -> str:
    return f"{API}/jobs/{job_id}/"


def parse_time(value: Any) -> datetime:
    assert isinstance(value, str), value
    assert TIME_PATTERN.match(value), f"not ISO 8601 UTC ending in Z: {value!r}"
    return datetime.fromisoformat(value[:-1] + "+00:00")


def check_status_body(body: Any, *, job_id: str | None = None, status: str | None = None,
                      job_type: str | None = None, description: str | None = None) -> Any:
    """The seed's StatusResponse: exactly seven fields, each of its type."""
    assert isinstance(body, dict), body
    assert set(body) == STATUS_FIELDS, body
    assert body["status"] in STATES
    assert body["code"] == (1 if body["status"] in {"ERROR", "EXPIRED"} else 0), body
    assert str(UUID(body["statusId"])) == body["statusId"]
    parse_time(body["created"])
    assert isinstance(body["description"], str)
    assert isinstance(body["message"], str)
    assert isinstance(body["statusType"], str)
    if job_id is not None:
        assert body["statusId"] == job_id
    if status is not None:
        assert body["status"] == status, body
    if job_type is not None:
        assert body["statusType"] == job_type
    if description is not None:
        assert body["description"] == description
    return body


def check_validation_error(response: httpx.Response,
                           loc_prefix: Sequence[str | int]) -> list[Any]:
    """422 in the seed's HTTPValidationErrorResponse shape; some item's loc starts so."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], list)
    assert body["detail"], body
    for item in body["detail"]:
        assert set(item) == {"loc", "msg", "type"}, item
        assert isinstance(item["loc"], list)
        assert item["loc"]
        assert all(isinstance(part, str | int) for part in item["loc"]), item
        assert isinstance(item["msg"], str)
        assert isinstance(item["type"], str)
    assert any(item["loc"][:len(loc_prefix)] == loc_prefix for item in body["detail"]), body
    detail: list[Any] = body["detail"]
    return detail


def check_detail(response: httpx.Response, status_code: int) -> str:
    """`{"detail": "..."}` with the given status."""
    assert response.status_code == status_code, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return str(body["detail"])


def total_count(client: httpx.Client) -> int:
    response = client.get(f"{API}/jobs/", params={"limit": 1})
    assert response.status_code == 200, response.text
    return int(response.json()["totalCount"])


def waiting_requests(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r"^genai_jobs_waiting_requests (\S+)$", text, re.MULTILINE)
    assert match, "no genai_jobs_waiting_requests in /metrics"
    return float(match.group(1))


def close_server(running: Server) -> None:
    running.service.terminate()
    running.service.close()


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with no worker: its jobs stay INITIALIZED until aborted or expired."""
    running = start_server(tmp_path_factory.mktemp("idle"), "--workers", "0")
    try:
        yield running
    finally:
        close_server(running)


@pytest.fixture
def idle(idle_server: Server) -> Iterator[httpx.Client]:
    with idle_server.client() as client:
        yield client


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def tenant_token(server: Server) -> str:
    return server.make_token(f"api-{uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def other_tenant_token(server: Server) -> str:
    return server.make_token(f"api-other-{uuid4().hex[:8]}")


@pytest.fixture
def tenant(server: Server, tenant_token: str) -> Iterator[httpx.Client]:
    with server.client(tenant_token) as client:
        yield client


@pytest.fixture(scope="module")
def finished(server: Server) -> dict[str, str]:
    """One job in each of COMPLETED, ERROR and EXPIRED, run side by side."""
    with server.client() as client:
        jobs = {
            "COMPLETED": submit(client, SLEEP, {"seconds": 0.1}, description="to complete"),
            "ERROR": submit(client, SLEEP, {"seconds": 0.1, "outcome": "error"},
                            maxAttempts=1, description="to fail"),
            "EXPIRED": submit(client, SLEEP, {"seconds": 5}, expiresIn=1,
                              description="to expire"),
        }
        for state, job_id in jobs.items():
            wait_for_status(client, job_id, state, timeout=15)
    return jobs


# -- GET status: the seed --------------------------------------------------------


def test_the_fast_path_and_the_route_answer_alike(
    admin: httpx.Client, idle: httpx.Client, finished: dict[str, str]
) -> None:
    """The polls are answered before routing (api/fastpath.py) unless the query has
    more than `waitSeconds`; with more, they go through the routes. Same answers."""
    queued = submit(idle, SLEEP, {"seconds": 1}, description="queued")
    cases = [(idle, queued), *((admin, job_id) for job_id in finished.values())]
    for client, job_id in cases:
        for path in (status_path(job_id), job_path(job_id)):
            fast = client.get(path)
            waited = client.get(path, params={"waitSeconds": 0})
            routed = client.get(path, params={"waitSeconds": 0, **ROUTED})
            assert fast.status_code == waited.status_code == routed.status_code == 200
            assert fast.content == waited.content == routed.content
            for header in ("content-type", "retry-after", "location"):
                assert (fast.headers.get(header) == waited.headers.get(header)
                        == routed.headers.get(header)), (path, header)


@pytest.mark.parametrize("routed", [False, True])
def test_a_long_poll_of_the_job_answers_when_it_changes(
        tenant: httpx.Client, routed: bool) -> None:
    job_id = submit(tenant, SLEEP, {"seconds": 0.4})
    params: dict[str, Any] = {"waitSeconds": 20, **(ROUTED if routed else {})}
    seen = [tenant.get(job_path(job_id)).json()["status"]]
    started = time.monotonic()
    while seen[-1] != "COMPLETED" and len(seen) < 10:  # bounded: 3 changes at most
        answer = tenant.get(job_path(job_id), params=params)
        assert answer.status_code == 200, answer.text
        seen.append(answer.json()["status"])
    assert seen[-1] == "COMPLETED", seen
    assert time.monotonic() - started < 15  # woken by the changes, not by the 20 s
    assert answer.json()["result"] is not None


def test_status_of_a_queued_job_is_exactly_the_seed_shape(idle: httpx.Client) -> None:
    submitted_at = datetime.now(UTC)
    job_id = submit(idle, SLEEP, {"seconds": 1}, description="seed shape")

    response = idle.get(status_path(job_id))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = check_status_body(response.json(), job_id=job_id, status="INITIALIZED",
                             job_type=SLEEP, description="seed shape")
    assert body["code"] == 0
    assert body["message"] == ""
    assert abs(parse_time(body["created"]) - submitted_at) < timedelta(seconds=30)
    retry_after = response.headers.get("retry-after")
    assert retry_after is not None
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    assert "location" not in response.headers


def test_status_description_defaults_to_empty(idle: httpx.Client) -> None:
    job_id = submit(idle, SLEEP, {"seconds": 1})
    body = idle.get(status_path(job_id)).json()
    check_status_body(body, job_id=job_id, description="")


def test_status_of_a_completed_job_points_at_its_result(
    server: Server, admin: httpx.Client, finished: dict[str, str]
) -> None:
    job_id = finished["COMPLETED"]

    response = admin.get(status_path(job_id))

    assert response.status_code == 200
    check_status_body(response.json(), job_id=job_id, status="COMPLETED", job_type=SLEEP,
                      description="to complete")
    assert response.json()["message"] == ""
    assert "retry-after" not in response.headers
    location = response.headers["location"]
    assert location.startswith(f"{server.url}/"), location
    result = admin.get(location)
    assert result.status_code == 200
    assert result.json()["result"] == {"slept": 0.1}


def test_status_location_is_the_handlers_own_resource(admin: httpx.Client) -> None:
    job_id = submit(admin, "test.location")
    wait_for_status(admin, job_id, "COMPLETED")

    response = admin.get(status_path(job_id))

    assert response.status_code == 200
    check_status_body(response.json(), job_id=job_id, status="COMPLETED",
                      job_type="test.location")
    assert response.headers["location"] == "https://example.invalid/results/42"
    assert "retry-after" not in response.headers


@pytest.mark.parametrize("state", ["ERROR", "EXPIRED"])
def test_status_of_a_failed_job_has_code_1_and_a_reason(
    admin: httpx.Client, finished: dict[str, str], state: str
) -> None:
    response = admin.get(status_path(finished[state]))

    assert response.status_code == 200
    body = check_status_body(response.json(), job_id=finished[state], status=state,
                             job_type=SLEEP)
    assert body["code"] == 1
    assert body["message"]
    assert "Traceback" not in body["message"]
    assert "\n" not in body["message"]
    assert "retry-after" not in response.headers
    assert "location" not in response.headers


def test_error_message_says_why(admin: httpx.Client, finished: dict[str, str]) -> None:
    message = admin.get(status_path(finished["ERROR"])).json()["message"]
    assert "outcome=error" in message


def test_expired_job_was_stopped_near_its_deadline(
    admin: httpx.Client, finished: dict[str, str]
) -> None:
    job = admin.get(job_path(finished["EXPIRED"])).json()
    assert job["status"] == "EXPIRED"
    assert "expire" in job["message"].lower()
    assert job["result"] is None
    created, expires = parse_time(job["created"]), parse_time(job["expiresAt"])
    assert abs((expires - created).total_seconds() - 1) < 0.5
    # The handler (5 s of sleep) was stopped, not waited for.
    assert parse_time(job["finishedAt"]) - created < timedelta(seconds=4)


@pytest.mark.parametrize("bad_id", [
    "abc",
    "not-a-uuid",
    "e900225c-0629-4e96-be6e-86a17a30964Z",
    "e900225c06294e96be6e86a17a309645e900225c",
])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_status_with_a_non_uuid_id_is_422_in_the_seed_shape(
    admin: httpx.Client, bad_id: str, method: str
) -> None:
    response = admin.request(method, status_path(bad_id))

    detail = check_validation_error(response, ["path", "statusId"])
    assert len(detail) == 1
    assert detail[0]["loc"] == ["path", "statusId"]
    assert set(response.json()) == {"detail"}
    assert bad_id not in response.text, "the input must not be echoed back"


def test_job_route_with_a_non_uuid_id_is_422(admin: httpx.Client) -> None:
    detail = check_validation_error(admin.get(job_path("not-a-uuid")), ["path", "statusId"])
    assert [item["loc"] for item in detail] == [["path", "statusId"]]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_status_of_an_unknown_id_is_404(admin: httpx.Client, method: str) -> None:
    check_detail(admin.request(method, status_path(str(uuid4()))), 404)


def test_job_of_an_unknown_id_is_404(admin: httpx.Client) -> None:
    check_detail(admin.get(job_path(str(uuid4()))), 404)


# -- waitSeconds: the long-poll ---------------------------------------------------


def test_wait_seconds_answers_as_soon_as_a_worker_changes_the_status(
    admin: httpx.Client,
) -> None:
    job_id = submit(admin, SLEEP, {"seconds": 1.5})
    wait_for_status(admin, job_id, "RUNNING")

    started = time.monotonic()
    response = admin.get(status_path(job_id), params={"waitSeconds": 30})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    check_status_body(response.json(), job_id=job_id, status="COMPLETED")
    assert elapsed < FEW_SECONDS, f"held {elapsed:.1f} s for a 1.5 s job"
    assert "retry-after" not in response.headers
    assert "location" in response.headers


def test_wait_seconds_answers_as_soon_as_the_job_is_aborted(
    idle_server: Server, idle: httpx.Client
) -> None:
    job_id = submit(idle, SLEEP, {"seconds": 1})
    answer: dict[str, Any] = {}

    def long_poll() -> None:
        with idle_server.client() as other:
            started = time.monotonic()
            answer["response"] = other.get(status_path(job_id), params={"waitSeconds": 30})
            answer["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll, daemon=True)
    before = waiting_requests(idle_server.url)
    poller.start()
    try:
        poll_until(lambda: waiting_requests(idle_server.url) > before, 10,
                   what="the long-poll to be held")
        aborted_at = time.monotonic()
        assert idle.delete(status_path(job_id)).status_code == 202
    finally:
        poller.join(timeout=40)
    assert not poller.is_alive()
    assert time.monotonic() - aborted_at < FEW_SECONDS
    assert answer["elapsed"] < 25
    check_status_body(answer["response"].json(), job_id=job_id, status="ABORTED")


def test_wait_seconds_holds_until_the_limit_when_nothing_changes(idle: httpx.Client) -> None:
    job_id = submit(idle, SLEEP, {"seconds": 1})

    started = time.monotonic()
    response = idle.get(status_path(job_id), params={"waitSeconds": 2})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    check_status_body(response.json(), job_id=job_id, status="INITIALIZED")
    assert 1.8 <= elapsed < 2 + FEW_SECONDS, elapsed
    assert "retry-after" in response.headers


def test_wait_seconds_on_a_terminal_job_answers_at_once(
    admin: httpx.Client, finished: dict[str, str]
) -> None:
    started = time.monotonic()
    response = admin.get(status_path(finished["COMPLETED"]), params={"waitSeconds": 20})
    assert response.status_code == 200
    assert time.monotonic() - started < 2
    check_status_body(response.json(), status="COMPLETED")


def test_wait_seconds_zero_answers_at_once(idle: httpx.Client) -> None:
    job_id = submit(idle, SLEEP, {"seconds": 1})
    started = time.monotonic()
    response = idle.get(status_path(job_id), params={"waitSeconds": 0})
    assert response.status_code == 200
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("value", ["-1", "61", "abc", ""])
@pytest.mark.parametrize("route", [status_path, job_path])
def test_wait_seconds_out_of_range_is_422(idle: httpx.Client, value: str, route: Any) -> None:
    job_id = submit(idle, SLEEP, {"seconds": 1})
    response = idle.get(route(job_id), params={"waitSeconds": value})
    detail = check_validation_error(response, ["query", "waitSeconds"])
    assert len(detail) == 1


# -- DELETE status: abort -----------------------------------------------------------


def test_abort_of_a_queued_job_is_immediate_and_idempotent(idle: httpx.Client) -> None:
    job_id = submit(idle, SLEEP, {"seconds": 1}, description="to abort")

    response = idle.delete(status_path(job_id))

    assert response.status_code == 202
    body = check_status_body(response.json(), job_id=job_id, status="ABORTED", job_type=SLEEP,
                             description="to abort")
    assert body["code"] == 0
    assert body["message"]
    assert "retry-after" not in response.headers
    assert "location" not in response.headers
    assert idle.get(status_path(job_id)).json() == body
    job = idle.get(job_path(job_id)).json()
    assert job["attempts"] == 0
    assert job["startedAt"] is None
    parse_time(job["finishedAt"])

    again = idle.delete(status_path(job_id))
    assert again.status_code == 202
    assert again.json() == body
    assert idle.get(job_path(job_id)).json() == job


@pytest.mark.parametrize(("job_type", "payload"), [
    (SLEEP, {"seconds": 60}),
    ("test.sync_sleep", {"seconds": 60}),
])
def test_abort_of_a_running_job_stops_its_handler(
    admin: httpx.Client, tmp_path: Path, job_type: str, payload: dict[str, Any]
) -> None:
    record = tmp_path / "runs.log"
    if job_type == "test.sync_sleep":
        payload = {**payload, "record": str(record)}
    job_id = submit(admin, job_type, payload)
    wait_for_status(admin, job_id, "RUNNING")

    response = admin.delete(status_path(job_id))

    # Recorded at once; the job stays RUNNING until its worker has stopped the work.
    assert response.status_code == 202
    body = check_status_body(response.json(), job_id=job_id, status="RUNNING",
                             job_type=job_type)
    assert "abort" in body["message"].lower()
    assert "retry-after" in response.headers
    again = admin.delete(status_path(job_id))
    assert again.status_code == 202
    assert again.json()["status"] in {"RUNNING", "ABORTED"}

    started = time.monotonic()
    job = wait_for_status(admin, job_id, TERMINAL, timeout=FEW_SECONDS)
    assert job["status"] == "ABORTED", job
    assert time.monotonic() - started < FEW_SECONDS
    assert job["code"] == 0
    assert "abort" in job["message"].lower()
    assert job["result"] is None
    assert job["attempts"] == 1
    parse_time(job["finishedAt"])
    if job_type == "test.sync_sleep":
        events = [line.split()[2] for line in record.read_text().splitlines()]
        assert events == ["start"], "the handler ran on to its end"

    final = admin.delete(status_path(job_id))
    assert final.status_code == 202
    check_status_body(final.json(), job_id=job_id, status="ABORTED")
    assert admin.get(job_path(job_id)).json() == job


@pytest.mark.parametrize("state", ["COMPLETED", "ERROR", "EXPIRED"])
def test_abort_of_a_finished_job_is_409_and_changes_nothing(
    admin: httpx.Client, finished: dict[str, str], state: str
) -> None:
    job_id = finished[state]
    before = admin.get(job_path(job_id)).json()
    assert before["status"] == state

    check_detail(admin.delete(status_path(job_id)), 409)

    assert admin.get(job_path(job_id)).json() == before


# -- POST jobs: submit -------------------------------------------------------------


def test_submit_answers_202_with_the_status_and_its_absolute_location(
    server: Server, tenant: httpx.Client
) -> None:
    response = tenant.post(f"{API}/jobs/", json={
        "jobType": SLEEP, "payload": {"seconds": 0.1}, "description": "submitted",
        "expiresIn": 600, "maxAttempts": 2, "priority": 5,
    })

    assert response.status_code == 202, response.text
    body = check_status_body(response.json(), status="INITIALIZED", job_type=SLEEP,
                             description="submitted")
    assert body["message"] == ""
    assert response.headers["location"] == f"{server.url}{status_path(body['statusId'])}"
    followed = tenant.get(response.headers["location"])
    assert followed.status_code == 200
    check_status_body(followed.json(), job_id=body["statusId"], description="submitted")
    assert followed.json()["created"] == body["created"]


# A submit without a query string is answered in front of the framework
# (api/fastsubmit.py); with one, it goes through the route. Same answers.


def test_the_submit_fast_path_and_the_route_answer_alike(tenant: httpx.Client) -> None:
    request = {"jobType": SLEEP, "payload": {"seconds": 0.1}, "description": "alike",
               "expiresIn": 600, "maxAttempts": 2, "priority": 5}

    fast = tenant.post(f"{API}/jobs/", json=request)
    routed = tenant.post(f"{API}/jobs/", json=request, params=ROUTED)

    assert fast.status_code == routed.status_code == 202
    assert fast.headers["content-type"] == routed.headers["content-type"]
    ids = [check_status_body(answer.json(), status="INITIALIZED", job_type=SLEEP,
                             description="alike")["statusId"] for answer in (fast, routed)]
    assert fast.headers["location"].replace(ids[0], ids[1]) == routed.headers["location"]
    unique = {"statusId", "created"}
    assert ({k: v for k, v in fast.json().items() if k not in unique}
            == {k: v for k, v in routed.json().items() if k not in unique})
    stored = [tenant.get(job_path(job_id)).json() for job_id in ids]
    for field in ("payload", "priority", "maxAttempts", "jobType", "tenant", "description"):
        assert stored[0][field] == stored[1][field], field
    assert stored[0]["payload"] == {"seconds": 0.1, "outcome": "complete"}  # default filled in


def test_a_submit_body_sent_in_parts_is_read_whole(tenant: httpx.Client) -> None:
    body = json.dumps({"jobType": SLEEP, "payload": {"seconds": 0.25},
                       "description": "in parts"}).encode()
    parts = iter([body[:7], body[7:30], body[30:]])

    response = tenant.post(f"{API}/jobs/", content=parts,
                           headers={"content-type": "application/json"})

    assert response.status_code == 202, response.text
    stored = tenant.get(job_path(response.json()["statusId"])).json()
    assert stored["payload"]["seconds"] == 0.25
    assert stored["description"] == "in parts"


@pytest.mark.parametrize(("first", "replay"), [({}, ROUTED), (ROUTED, {})])
def test_an_idempotency_key_holds_across_the_fast_path_and_the_route(
    tenant: httpx.Client, first: dict[str, str], replay: dict[str, str]
) -> None:
    key = f"key-{uuid4()}"
    request = {"jobType": SLEEP, "payload": {"seconds": 0.1}}
    headers = {"Idempotency-Key": key}

    created = tenant.post(f"{API}/jobs/", json=request, headers=headers, params=first)
    again = tenant.post(f"{API}/jobs/", json=request, headers=headers, params=replay)
    other = tenant.post(f"{API}/jobs/", json={**request, "priority": 1}, headers=headers,
                        params=replay)

    assert (created.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["statusId"] == created.json()["statusId"]
    assert again.json()["created"] == created.json()["created"]
    assert again.headers["location"] == created.headers["location"]
    check_detail(other, 409)


def test_submit_without_optional_fields_uses_the_defaults(tenant: httpx.Client) -> None:
    response = tenant.post(f"{API}/jobs/", json={"jobType": SLEEP, "payload": {"seconds": 0}})
    assert response.status_code == 202, response.text
    job = tenant.get(job_path(response.json()["statusId"])).json()
    assert job["description"] == ""
    assert job["priority"] == 0
    assert job["maxAttempts"] >= 1
    assert parse_time(job["expiresAt"]) > parse_time(job["created"])


TOO_LONG = "x" * 1001
REJECTED_BODIES: list[tuple[str, Any, list[str | int]]] = [
    ("unknown job type", {"jobType": "no.such.type", "payload": {}}, ["body", "jobType"]),
    ("empty job type", {"jobType": "", "payload": {}}, ["body", "jobType"]),
    ("missing job type", {"payload": {"seconds": 1}}, ["body", "jobType"]),
    ("payload below minimum", {"jobType": SLEEP, "payload": {"seconds": -1}},
     ["body", "payload", "seconds"]),
    ("payload above maximum", {"jobType": SLEEP, "payload": {"seconds": 3601}},
     ["body", "payload", "seconds"]),
    ("payload missing field", {"jobType": SLEEP, "payload": {}}, ["body", "payload", "seconds"]),
    ("payload wrong type", {"jobType": SLEEP, "payload": {"seconds": "long"}},
     ["body", "payload", "seconds"]),
    ("payload bad enum", {"jobType": SLEEP, "payload": {"seconds": 1, "outcome": "maybe"}},
     ["body", "payload", "outcome"]),
    ("payload extra field", {"jobType": SLEEP, "payload": {"seconds": 1, "bogus": 1}},
     ["body", "payload", "bogus"]),
    ("job type not a string", {"jobType": 5, "payload": {}}, ["body", "jobType"]),
    ("payload not an object", {"jobType": SLEEP, "payload": [1]}, ["body", "payload"]),
    ("description not a string", {"jobType": SLEEP, "payload": {"seconds": 1},
                                  "description": 5}, ["body", "description"]),
    ("maxAttempts not an int", {"jobType": SLEEP, "payload": {"seconds": 1},
                                "maxAttempts": "many"}, ["body", "maxAttempts"]),
    ("priority not an int", {"jobType": SLEEP, "payload": {"seconds": 1}, "priority": "high"},
     ["body", "priority"]),
    ("description too long", {"jobType": SLEEP, "payload": {"seconds": 1},
                              "description": TOO_LONG}, ["body", "description"]),
    ("unknown top-level field", {"jobType": SLEEP, "payload": {"seconds": 1}, "bogus": 1},
     ["body", "bogus"]),
    ("snake_case field", {"job_type": SLEEP, "payload": {"seconds": 1}}, ["body"]),
    ("expiresIn above the maximum", {"jobType": SLEEP, "payload": {"seconds": 1},
                                     "expiresIn": MAX_EXPIRES_IN + 1}, ["body", "expiresIn"]),
    ("expiresIn zero", {"jobType": SLEEP, "payload": {"seconds": 1}, "expiresIn": 0},
     ["body", "expiresIn"]),
    ("expiresIn negative", {"jobType": SLEEP, "payload": {"seconds": 1}, "expiresIn": -5},
     ["body", "expiresIn"]),
    ("maxAttempts above the maximum", {"jobType": SLEEP, "payload": {"seconds": 1},
                                       "maxAttempts": MAX_MAX_ATTEMPTS + 1},
     ["body", "maxAttempts"]),
    ("maxAttempts zero", {"jobType": SLEEP, "payload": {"seconds": 1}, "maxAttempts": 0},
     ["body", "maxAttempts"]),
    ("body not an object", [SLEEP], ["body"]),
    ("body null", None, ["body"]),
    # Numbers are JSON numbers of their kind, never read from strings, booleans or 1.0.
    ("priority a boolean", {"jobType": SLEEP, "payload": {"seconds": 1}, "priority": True},
     ["body", "priority"]),
    ("priority a numeric string", {"jobType": SLEEP, "payload": {"seconds": 1},
                                   "priority": "5"}, ["body", "priority"]),
    ("priority a float", {"jobType": SLEEP, "payload": {"seconds": 1}, "priority": 5.0},
     ["body", "priority"]),
    ("maxAttempts a float", {"jobType": SLEEP, "payload": {"seconds": 1}, "maxAttempts": 1.0},
     ["body", "maxAttempts"]),
    ("expiresIn a numeric string", {"jobType": SLEEP, "payload": {"seconds": 1},
                                    "expiresIn": "1"}, ["body", "expiresIn"]),
    ("expiresIn a boolean", {"jobType": SLEEP, "payload": {"seconds": 1}, "expiresIn": True},
     ["body", "expiresIn"]),
]


@pytest.mark.parametrize(("case", "body", "loc"), REJECTED_BODIES,
                         ids=[case for case, _, _ in REJECTED_BODIES])
def test_submit_of_an_invalid_body_is_422_and_stores_nothing(
    tenant: httpx.Client, case: str, body: Any, loc: list[str | int]
) -> None:
    before = total_count(tenant)
    response = tenant.post(f"{API}/jobs/", content=json.dumps(body),
                           headers={"content-type": "application/json"})
    check_validation_error(response, loc)
    assert "location" not in response.headers
    assert total_count(tenant) == before


@pytest.mark.parametrize("raw", [b'{"jobType": "diagnostics.sleep", "payload": ', b"", b"{'a': 1}"],
                         ids=["truncated", "empty", "single quotes"])
def test_submit_of_malformed_json_is_422_and_stores_nothing(
    tenant: httpx.Client, raw: bytes
) -> None:
    before = total_count(tenant)
    response = tenant.post(f"{API}/jobs/", content=raw,
                           headers={"content-type": "application/json"})
    check_validation_error(response, ["body"])
    assert total_count(tenant) == before


@pytest.mark.parametrize(("body", "headers"), [
    ({"jobType": "test.flaky", "payload": {"fail_attempts": 2**64}}, {}),
    ({"jobType": "test.sync_sleep", "payload": {"seconds": 0.1, "extra": 2**64}},
     {"Idempotency-Key": "big-int"}),
], ids=["in the payload", "in an ignored field, with an Idempotency-Key"])
def test_submit_of_an_integer_beyond_64_bits_is_not_a_server_error(
    tenant: httpx.Client, body: dict[str, Any], headers: dict[str, str]
) -> None:
    before = total_count(tenant)
    response = tenant.post(f"{API}/jobs/", json=body, headers=headers)
    assert response.status_code in {202, 422}, response.text
    if response.status_code == 422:
        check_validation_error(response, ["body"])
        assert total_count(tenant) == before


@pytest.mark.parametrize("raw", [
    b'{"jobType": "diagnostics.sleep", "payload": {"seconds": 1}, "description": "\xff"}',
    b"[" * 100_000 + b"]" * 100_000,
], ids=["not UTF-8", "nested too deep"])
def test_submit_of_an_undecodable_body_is_422(tenant: httpx.Client, raw: bytes) -> None:
    before = total_count(tenant)
    response = tenant.post(f"{API}/jobs/", content=raw,
                           headers={"content-type": "application/json"})
    assert total_count(tenant) == before
    check_validation_error(response, ["body"])


def test_a_wrong_method_is_405_with_a_detail_and_every_allowed_method(
        admin: httpx.Client) -> None:
    response = admin.put(status_path(str(uuid4())))
    check_detail(response, 405)
    assert response.headers["allow"] == "DELETE, GET"  # two routes, one path
    assert admin.delete(f"{API}/jobs/").headers["allow"] == "GET, POST"


def _oversized_body() -> bytes:
    body = json.dumps({"jobType": SLEEP, "payload": {"seconds": 1}}).encode()
    return body[:-1] + b" " * (MAX_BODY_BYTES + 1 - len(body)) + b"}"


def test_submit_of_a_body_over_the_limit_is_413_and_stores_nothing(
    tenant: httpx.Client,
) -> None:
    body = _oversized_body()
    assert len(body) == MAX_BODY_BYTES + 1
    before = total_count(tenant)

    declared = tenant.post(f"{API}/jobs/", content=body,
                           headers={"content-type": "application/json"})
    streamed = tenant.post(f"{API}/jobs/", content=iter([body[:500_000], body[500_000:]]),
                           headers={"content-type": "application/json"})

    assert declared.status_code == 413
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert total_count(tenant) == before


def test_submit_of_a_body_over_the_limit_answers_a_json_detail(tenant: httpx.Client) -> None:
    check_detail(tenant.post(f"{API}/jobs/", content=_oversized_body(),
                             headers={"content-type": "application/json"}), 413)


def test_submit_of_a_body_just_under_the_limit_is_accepted(tenant: httpx.Client) -> None:
    body = json.dumps({"jobType": SLEEP, "payload": {"seconds": 0}}).encode()
    padded = body[:-1] + b" " * (MAX_BODY_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_BODY_BYTES
    response = tenant.post(f"{API}/jobs/", content=padded,
                           headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text[:300]


def test_submit_with_an_idempotency_key_returns_the_first_job(
    server: Server, tenant: httpx.Client, other_tenant_token: str
) -> None:
    key = f"key-{uuid4()}"
    request = {"jobType": SLEEP, "payload": {"seconds": 0.1}, "description": "once"}
    before = total_count(tenant)

    first = tenant.post(f"{API}/jobs/", json=request, headers={"Idempotency-Key": key})
    replay = tenant.post(f"{API}/jobs/", json=request, headers={"Idempotency-Key": key})

    assert first.status_code == 202, first.text
    assert replay.status_code == 200, replay.text
    job_id = first.json()["statusId"]
    check_status_body(replay.json(), job_id=job_id, description="once")
    assert replay.json()["created"] == first.json()["created"]
    assert replay.headers["location"] == first.headers["location"]
    assert replay.headers["location"] == f"{server.url}{status_path(job_id)}"

    # The same key with another body is refused, and stores nothing.
    changed = {**request, "payload": {"seconds": 0.2}}
    check_detail(tenant.post(f"{API}/jobs/", json=changed, headers={"Idempotency-Key": key}),
                 409)
    assert total_count(tenant) == before + 1

    # Another tenant's key space is its own.
    with server.client(other_tenant_token) as other:
        theirs = other.post(f"{API}/jobs/", json=request, headers={"Idempotency-Key": key})
        assert theirs.status_code == 202, theirs.text
        assert theirs.json()["statusId"] != job_id
        assert other.get(status_path(theirs.json()["statusId"])).status_code == 200
        check_detail(other.get(status_path(job_id)), 404)


def test_an_idempotency_key_compares_the_job_not_its_spelling(tenant: httpx.Client) -> None:
    """A payload with its defaults written out is the same job as one without them."""
    key = f"key-{uuid4()}"
    short = {"jobType": SLEEP, "payload": {"seconds": 0}}
    spelled_out = {"jobType": SLEEP, "payload": {"outcome": "complete", "seconds": 0.0},
                   "priority": 0, "description": ""}
    first = tenant.post(f"{API}/jobs/", json=short, headers={"Idempotency-Key": key})
    again = tenant.post(f"{API}/jobs/", json=spelled_out, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.json()["statusId"] == first.json()["statusId"]


def test_submit_without_idempotency_key_makes_a_new_job_each_time(tenant: httpx.Client) -> None:
    request = {"jobType": SLEEP, "payload": {"seconds": 0}}
    first = tenant.post(f"{API}/jobs/", json=request)
    second = tenant.post(f"{API}/jobs/", json=request)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["statusId"] != second.json()["statusId"]


def test_priority_higher_runs_first_then_first_in_first_out(tmp_path: Path) -> None:
    """Queued on a server with no worker, then one worker with one slot takes them."""
    running = start_server(tmp_path, "--workers", "0")
    worker = None
    try:
        with running.client() as client:
            order = [
                ("low", submit(client, SLEEP, {"seconds": 0}, priority=-5)),
                ("normal-1", submit(client, SLEEP, {"seconds": 0})),
                ("high", submit(client, SLEEP, {"seconds": 0}, priority=10)),
                ("normal-2", submit(client, SLEEP, {"seconds": 0})),
            ]
            worker = running.start_worker("--concurrency", "1")
            started = {
                name: parse_time(wait_for_status(client, job_id, "COMPLETED")["startedAt"])
                for name, job_id in order
            }
        assert sorted(started, key=started.__getitem__) == ["high", "normal-1", "normal-2", "low"]
    finally:
        if worker is not None:
            worker.terminate()
            worker.close()
        close_server(running)


# -- GET jobs/{id}: one job in full -------------------------------------------------


def test_job_record_has_every_field_and_progress_rises(tenant: httpx.Client) -> None:
    response = tenant.post(f"{API}/jobs/", json={
        "jobType": SLEEP, "payload": {"seconds": 2}, "description": "full record",
        "expiresIn": 600, "maxAttempts": 2, "priority": 3,
    })
    assert response.status_code == 202
    job_id = response.json()["statusId"]

    seen: list[dict[str, Any]] = []

    def completed() -> dict[str, Any] | None:
        job: dict[str, Any] = tenant.get(job_path(job_id), params={"waitSeconds": 2}).json()
        seen.append(job)
        return job if job["status"] in TERMINAL else None

    job = poll_until(completed, 20, interval=0, what="the job to finish")

    for version in seen:
        assert set(version) == JOB_FIELDS, set(version) ^ JOB_FIELDS
        check_status_body({key: version[key] for key in STATUS_FIELDS}, job_id=job_id,
                          job_type=SLEEP, description="full record")
    assert job["status"] == "COMPLETED"
    assert job["jobType"] == SLEEP
    assert job["tenant"].startswith("api-")
    assert job["payload"]["seconds"] == 2
    assert job["result"] == {"slept": 2}
    assert job["resultLocation"] is None
    assert job["progress"] == 1.0
    assert isinstance(job["progressMessage"], str)
    assert (job["attempts"], job["maxAttempts"], job["priority"]) == (1, 2, 3)
    created = parse_time(job["created"])
    started, finished = parse_time(job["startedAt"]), parse_time(job["finishedAt"])
    assert created <= started <= finished
    assert finished - started >= timedelta(seconds=1.9)
    assert parse_time(job["updatedAt"]) >= started
    assert abs((parse_time(job["expiresAt"]) - created).total_seconds() - 600) < 1

    progress = [version["progress"] for version in seen if version["progress"] is not None]
    assert progress == sorted(progress), progress
    assert any(0 < value < 1 for value in progress), progress
    running = [version for version in seen if version["status"] == "RUNNING"]
    assert running, "never saw the job RUNNING"
    assert all(version["finishedAt"] is None and version["result"] is None
               for version in running)
    assert all(version["attempts"] == 1 for version in running)


def test_job_record_of_a_queued_job(idle: httpx.Client) -> None:
    job_id = submit(idle, SLEEP, {"seconds": 1}, maxAttempts=4)
    job = idle.get(job_path(job_id)).json()
    assert set(job) == JOB_FIELDS
    assert job["status"] == "INITIALIZED"
    assert job["tenant"] == "admin"
    assert job["payload"]["seconds"] == 1
    assert (job["attempts"], job["maxAttempts"]) == (0, 4)
    assert job["progress"] is None
    assert job["progressMessage"] == ""
    assert job["result"] is None
    assert job["resultLocation"] is None
    assert job["startedAt"] is None
    assert job["finishedAt"] is None
    for field in ("created", "expiresAt", "updatedAt"):
        parse_time(job[field])


def test_job_record_of_a_handler_resource(admin: httpx.Client) -> None:
    job_id = submit(admin, "test.location")
    job = wait_for_status(admin, job_id, "COMPLETED")
    assert job["resultLocation"] == "https://example.invalid/results/42"
    assert job["result"] == {"rows": 42}


# -- GET jobs: the list ----------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(server: Server) -> tuple[str, list[str]]:
    """A tenant of its own with four finished jobs; ids in submission order."""
    token = server.make_token(f"list-{uuid4().hex[:8]}")
    with server.client(token) as client:
        ids = [
            submit(client, "test.location"),
            submit(client, SLEEP, {"seconds": 0.1}),
            submit(client, SLEEP, {"seconds": 0.1, "outcome": "error"}, maxAttempts=1),
            submit(client, "test.location"),
        ]
        for job_id in ids:
            wait_for_status(client, job_id, TERMINAL)
    return token, ids


@pytest.fixture
def lister(server: Server, listed: tuple[str, list[str]]) -> Iterator[httpx.Client]:
    with server.client(listed[0]) as client:
        yield client


def list_page(client: httpx.Client, url: str = f"{API}/jobs/", **params: Any) -> dict[str, Any]:
    response = client.get(url, params=params or None)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    assert set(page) == {"count", "next", "previous", "data", "totalCount"}
    assert page["count"] == len(page["data"])
    for job in page["data"]:
        assert set(job) == JOB_FIELDS
    return page


def ids_of(page: dict[str, Any]) -> list[str]:
    return [job["statusId"] for job in page["data"]]


def test_list_is_newest_first(lister: httpx.Client, listed: tuple[str, list[str]]) -> None:
    _, ids = listed
    page = list_page(lister)
    assert ids_of(page) == ids[::-1]
    assert (page["count"], page["totalCount"]) == (4, 4)
    assert page["next"] is None
    assert page["previous"] is None
    created = [parse_time(job["created"]) for job in page["data"]]
    assert created == sorted(created, reverse=True)
    assert {job["status"] for job in page["data"]} == {"COMPLETED", "ERROR"}


@pytest.mark.parametrize(("params", "expected"), [
    ({"status": "ERROR"}, [2]),
    ({"status": "COMPLETED"}, [3, 1, 0]),
    ({"status": ["ERROR", "COMPLETED"]}, [3, 2, 1, 0]),
    ({"status": "RUNNING"}, []),
    ({"jobType": "test.location"}, [3, 0]),
    ({"jobType": SLEEP, "status": "COMPLETED"}, [1]),
    ({"jobType": "no.such.type"}, []),
])
def test_list_filters(lister: httpx.Client, listed: tuple[str, list[str]],
                      params: dict[str, Any], expected: list[int]) -> None:
    _, ids = listed
    page = list_page(lister, **params)
    assert ids_of(page) == [ids[index] for index in expected]
    assert page["totalCount"] == len(expected)


def test_list_pages_link_with_absolute_urls_that_work(
    server: Server, lister: httpx.Client, listed: tuple[str, list[str]]
) -> None:
    _, ids = listed
    newest_first = ids[::-1]

    first = list_page(lister, limit=3)
    assert ids_of(first) == newest_first[:3]
    assert first["totalCount"] == 4
    assert first["previous"] is None
    assert first["next"].startswith(f"{server.url}{API}/jobs/?")

    second = list_page(lister, first["next"])
    assert ids_of(second) == newest_first[3:]
    assert second["next"] is None
    assert second["previous"].startswith(f"{server.url}{API}/jobs/?")

    back = list_page(lister, second["previous"])
    assert ids_of(back) == ids_of(first)


def test_list_links_keep_the_filters(
    server: Server, lister: httpx.Client, listed: tuple[str, list[str]]
) -> None:
    _, ids = listed
    first = list_page(lister, jobType="test.location", status="COMPLETED", limit=1)
    assert ids_of(first) == [ids[3]]
    assert first["totalCount"] == 2
    second = list_page(lister, first["next"])
    assert ids_of(second) == [ids[0]]
    assert second["next"] is None
    assert ids_of(list_page(lister, second["previous"])) == [ids[3]]


def test_list_links_keep_a_repeated_status_filter(
    lister: httpx.Client, listed: tuple[str, list[str]]
) -> None:
    _, ids = listed
    page = list_page(lister, status=["ERROR", "COMPLETED"], limit=1)
    seen = ids_of(page)
    for _ in range(10):  # bounded: four jobs, one per page
        if page["next"] is None:
            break
        page = list_page(lister, page["next"])
        assert page["totalCount"] == 4
        seen += ids_of(page)
    assert seen == ids[::-1]


def test_list_offset_pages(lister: httpx.Client, listed: tuple[str, list[str]]) -> None:
    _, ids = listed
    middle = list_page(lister, offset=1, limit=2)
    assert ids_of(middle) == ids[::-1][1:3]
    assert middle["next"] is not None
    assert middle["previous"] is not None
    beyond = list_page(lister, offset=10)
    assert beyond["data"] == []
    assert beyond["totalCount"] == 4
    assert beyond["next"] is None
    assert list_page(lister, limit=1000)["count"] == 4


@pytest.mark.parametrize(("params", "loc"), [
    ({"limit": 0}, ["query", "limit"]),
    ({"limit": 1001}, ["query", "limit"]),
    ({"limit": "ten"}, ["query", "limit"]),
    ({"offset": -1}, ["query", "offset"]),
    ({"status": "DONE"}, ["query", "status"]),
])
def test_list_with_bad_query_is_422(lister: httpx.Client, params: dict[str, Any],
                                    loc: list[str]) -> None:
    check_validation_error(lister.get(f"{API}/jobs/", params=params), loc)


@pytest.mark.parametrize("offset", [2**63, 10**20])
def test_list_with_a_huge_offset_is_not_a_server_error(lister: httpx.Client, offset: int) -> None:
    response = lister.get(f"{API}/jobs/", params={"offset": offset})
    assert response.status_code in {200, 422}, response.text
    if response.status_code == 422:
        check_validation_error(response, ["query", "offset"])
    else:
        assert response.json()["data"] == []


# -- GET jobTypes ------------------------------------------------------------------


def test_job_types_list_diagnostics_sleep_with_its_payload_schema(admin: httpx.Client) -> None:
    response = admin.get(f"{API}/jobTypes/")
    assert response.status_code == 200
    body = response.json()
    names = [item["name"] for item in body["data"]]
    assert {SLEEP, "test.sync_sleep", "test.location"} <= set(names)
    for item in body["data"]:
        assert {"name", "description", "payloadSchema"} <= set(item)
        assert isinstance(item["description"], str)
        assert isinstance(item["payloadSchema"], dict)
    sleep = next(item for item in body["data"] if item["name"] == SLEEP)
    schema = sleep["payloadSchema"]
    assert sleep["description"]
    assert schema["type"] == "object"
    assert schema["required"] == ["seconds"]
    seconds = schema["properties"]["seconds"]
    assert (seconds["type"], seconds["minimum"], seconds["maximum"]) == ("number", 0, 3600)
    assert schema["properties"]["outcome"]["enum"] == ["complete", "error"]


# -- service routes -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_routes_need_no_auth(server: Server, path: str) -> None:
    response = httpx.get(f"{server.url}{path}", timeout=10)
    assert response.status_code == 200


def test_metrics_are_prometheus_text(server: Server, finished: dict[str, str]) -> None:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE genai_jobs_jobs gauge" in response.text
    counts = dict(re.findall(r'^genai_jobs_jobs\{state="(\w+)"\} (\S+)$', response.text,
                             re.MULTILINE))
    assert set(counts) == STATES
    assert float(counts["COMPLETED"]) >= 1


def test_docs_need_no_auth(server: Server) -> None:
    response = httpx.get(f"{server.url}/docs", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_openapi_names_the_seeds_schemas(server: Server) -> None:
    response = httpx.get(f"{server.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    document = response.json()
    schemas = document["components"]["schemas"]
    assert {"StatusResponse", "JobErrorCode", "JobExecutionState",
            "HTTPValidationErrorResponse", "ValidationError"} <= set(schemas)
    assert "HTTPValidationError" not in schemas
    assert "#/components/schemas/HTTPValidationError\"" not in response.text
    status = schemas["StatusResponse"]
    assert set(status["properties"]) == STATUS_FIELDS
    assert {"code", "created", "status", "statusId"} <= set(status["required"])
    assert set(schemas["JobExecutionState"]["enum"]) == STATES
    assert sorted(schemas["JobErrorCode"]["enum"]) == [0, 1]
    assert set(schemas["ValidationError"]["properties"]) == {"loc", "msg", "type"}
    get_status = document["paths"][f"{API}/status/{{statusId}}/"]["get"]
    bad = get_status["responses"]["422"]["content"]["application/json"]["schema"]
    assert bad == {"$ref": "#/components/schemas/HTTPValidationErrorResponse"}
    assert "200" in get_status["responses"]


def test_openapi_declares_every_error_an_operation_gives(server: Server) -> None:
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    operations = [(path, method, operation) for path, item in document["paths"].items()
                  if path.startswith("/api/") for method, operation in item.items()]
    assert len(operations) > 20
    for path, method, operation in operations:
        declared = set(operation["responses"])
        where = f"{method.upper()} {path}"
        assert {"401", "503"} <= declared, where
        if "{" in path:
            assert "404" in declared, where
        if method in ("post", "patch"):
            assert {"413", "422"} <= declared, where
        detail = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert detail == {"$ref": "#/components/schemas/ErrorResponse"}, where
    paths = document["paths"]
    assert "409" in paths[f"{API}/status/{{statusId}}/"]["delete"]["responses"]
    assert "409" in paths[f"{API}/jobs/"]["post"]["responses"]  # an Idempotency-Key reused
    search = paths[f"{API}/vectorDatabases/{{vectorDatabaseId}}/search/"]["post"]
    assert {"409", "501"} <= set(search["responses"])
    assert "410" in paths["/api/v2/status/{statusId}/"]["get"]["responses"]


# -- absolute URLs and forwarded headers ------------------------------------------------


def test_location_uses_the_host_the_client_used(server: Server, admin: httpx.Client) -> None:
    port = httpx.URL(server.url).port
    response = admin.post(f"{API}/jobs/", json={"jobType": SLEEP, "payload": {"seconds": 0}},
                          headers={"Host": f"localhost:{port}"})
    assert response.status_code == 202
    job_id = response.json()["statusId"]
    assert response.headers["location"] == f"http://localhost:{port}{status_path(job_id)}"


def test_forwarded_host_is_ignored_by_default(server: Server, admin: httpx.Client) -> None:
    response = admin.post(f"{API}/jobs/", json={"jobType": SLEEP, "payload": {"seconds": 0}},
                          headers={"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 202
    job_id = response.json()["statusId"]
    assert response.headers["location"] == f"{server.url}{status_path(job_id)}"
    page = admin.get(f"{API}/jobs/", params={"limit": 1},
                     headers={"X-Forwarded-Host": "evil.example"}).json()
    assert page["next"].startswith(f"{server.url}/")


def test_forwarded_proto_is_ignored_by_default(server: Server, admin: httpx.Client) -> None:
    response = admin.post(f"{API}/jobs/", json={"jobType": SLEEP, "payload": {"seconds": 0}},
                          headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 202
    job_id = response.json()["statusId"]
    assert response.headers["location"] == f"{server.url}{status_path(job_id)}"


def test_forwarded_headers_are_honoured_behind_a_proxy(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--workers", "0", env={"GENAI_JOBS_BEHIND_PROXY": "true"})
    try:
        with running.client() as client:
            request = {"jobType": SLEEP, "payload": {"seconds": 0}}
            proxied = client.post(f"{API}/jobs/", json=request, headers={
                "X-Forwarded-Proto": "https", "X-Forwarded-Host": "jobs.example.com",
            })
            assert proxied.status_code == 202
            job_id = proxied.json()["statusId"]
            assert proxied.headers["location"] == f"https://jobs.example.com{status_path(job_id)}"

            chained = client.post(f"{API}/jobs/", json=request, headers={
                "X-Forwarded-Proto": "https, http",
                "X-Forwarded-Host": "jobs.example.com, inner.proxy",
            })
            assert chained.headers["location"] == (
                f"https://jobs.example.com{status_path(chained.json()['statusId'])}")

            direct = client.post(f"{API}/jobs/", json=request)
            assert direct.headers["location"] == (
                f"{running.url}{status_path(direct.json()['statusId'])}")

            page = client.get(f"{API}/jobs/", params={"limit": 1}, headers={
                "X-Forwarded-Proto": "https", "X-Forwarded-Host": "jobs.example.com",
            }).json()
            assert page["next"].startswith(f"https://jobs.example.com{API}/jobs/?")
    finally:
        close_server(running)
