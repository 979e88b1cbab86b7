"""DataRobot's own Python client (the pinned `datarobot` package), unchanged,
against our server: `Client` (version check, `Token` auth), `JobStatus.get`
and `wait_for_async_resolution`.

The client is made hermetic: no config file (HOME is a temporary directory),
no DATAROBOT_* variables, no proxies; every request it makes is recorded and
must go to the loopback server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import datarobot as dr
import httpx
import pytest
import requests
from datarobot.client import set_client
from datarobot.errors import AsyncProcessUnsuccessfulError, ClientError
from datarobot.models.genai.jobstatus import JobErrorCode, JobExecutionState, JobStatus
from datarobot.rest import RESTClientObject
from datarobot.utils.waiters import wait_for_async_resolution

from tests.support import Server, submit, wait_for_status

API = "/api/v2/genai"
SLEEP = "diagnostics.sleep"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
# The waiter sleeps 5 s between polls: one poll cycle plus slack.
ONE_POLL_CYCLE = 15.0


@pytest.fixture(scope="module")
def dr_token(server: Server) -> str:
    return server.make_token(f"datarobot-{uuid4().hex[:8]}")


@pytest.fixture
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No drconfig.yaml, no DATAROBOT_* settings, no proxy between us and 127.0.0.1."""
    for name in list(os.environ):
        if name.startswith("DATAROBOT_") or name.lower() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def sent(server: Server) -> Iterator[list[requests.PreparedRequest]]:
    """Every request the datarobot client sends; all must go to our loopback server."""
    recorded: list[requests.PreparedRequest] = []
    original = requests.Session.send

    def send(session: requests.Session, request: requests.PreparedRequest,
             **kwargs: Any) -> requests.Response:
        recorded.append(request)
        assert urlsplit(request.url).netloc == urlsplit(server.url).netloc, request.url
        return original(session, request, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "send", send)
        yield recorded


@pytest.fixture
def dr_client(server: Server, dr_token: str, hermetic: None,
              sent: list[requests.PreparedRequest]) -> Iterator[RESTClientObject]:
    previous = set_client(None)  # type: ignore[arg-type]
    try:
        yield dr.Client(endpoint=f"{server.url}/api/v2", token=dr_token, max_retries=0)
    finally:
        set_client(previous)  # type: ignore[arg-type]


@pytest.fixture
def http(server: Server, dr_token: str) -> Iterator[httpx.Client]:
    """Our own view of the same tenant, to submit and prepare jobs."""
    with server.client(dr_token) as client:
        yield client


def test_client_checks_the_version_and_sends_token_auth(
    dr_client: RESTClientObject, dr_token: str, sent: list[requests.PreparedRequest],
    server: Server,
) -> None:
    assert sent, "Client() made no request"
    first = sent[0]
    assert first.url == f"{server.url}/api/v2/version/"
    assert first.headers["Authorization"] == f"Token {dr_token}"
    assert dr_client.endpoint == f"{server.url}/api/v2"
    assert dr_client.get("version/").json()["versionString"] == "2.49.0"


def test_client_with_an_unknown_token_is_refused(
    server: Server, hermetic: None, sent: list[requests.PreparedRequest]
) -> None:
    previous = set_client(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(ClientError) as caught:
            dr.Client(endpoint=f"{server.url}/api/v2", token=f"gj_{uuid4().hex}", max_retries=0)
    finally:
        set_client(previous)  # type: ignore[arg-type]
    assert caught.value.status_code == 401
    assert [request.url for request in sent] == [f"{server.url}/api/v2/version/"]


def test_job_status_get_reads_a_completed_job(
    dr_client: RESTClientObject, http: httpx.Client
) -> None:
    job_id = submit(http, SLEEP, {"seconds": 0.1}, description="via datarobot")
    wait_for_status(http, job_id, "COMPLETED")

    status = JobStatus.get(job_id)

    assert status.status_id == job_id
    # The package keeps the raw values (its enums' values), not enum members, whatever
    # its annotations say.
    assert status.status == JobExecutionState.COMPLETED.value  # type: ignore[comparison-overlap]
    assert status.code == JobErrorCode.NO_ERROR.value
    assert status.status_type == SLEEP
    assert status.description == "via datarobot"
    assert status.message == ""
    assert status.created == http.get(f"{API}/status/{job_id}/").json()["created"]


def test_job_status_get_reads_a_failed_job(
    dr_client: RESTClientObject, http: httpx.Client
) -> None:
    job_id = submit(http, SLEEP, {"seconds": 0.1, "outcome": "error"}, maxAttempts=1)
    wait_for_status(http, job_id, "ERROR")

    status = JobStatus.get(job_id)

    assert status.status == JobExecutionState.ERROR.value  # type: ignore[comparison-overlap]
    assert status.code == JobErrorCode.GENERIC_ERROR.value
    assert "outcome=error" in status.message
    assert status.description == ""


def test_job_status_get_of_an_unknown_id_is_a_404(dr_client: RESTClientObject) -> None:
    with pytest.raises(ClientError) as caught:
        JobStatus.get(str(uuid4()))
    assert caught.value.status_code == 404


def test_waiter_returns_the_body_of_a_job_that_completes(
    dr_client: RESTClientObject, http: httpx.Client
) -> None:
    response = http.post(f"{API}/jobs/", json={"jobType": SLEEP, "payload": {"seconds": 0.2},
                                               "description": "waited for"})
    assert response.status_code == 202
    job_id = response.json()["statusId"]

    started = time.monotonic()
    body = wait_for_async_resolution(dr_client, response.headers["location"], max_wait=30)

    assert time.monotonic() - started < ONE_POLL_CYCLE
    assert body["statusId"] == job_id
    assert body["status"] == "COMPLETED"
    assert body["description"] == "waited for"
    assert set(body) == {"code", "created", "description", "message", "status", "statusId",
                         "statusType"}


def test_waiter_raises_for_an_error_job(
    dr_client: RESTClientObject, http: httpx.Client
) -> None:
    job_id = submit(http, SLEEP, {"seconds": 0.1, "outcome": "error"}, maxAttempts=1)
    wait_for_status(http, job_id, "ERROR")

    with pytest.raises(AsyncProcessUnsuccessfulError, match="ERROR"):
        wait_for_async_resolution(dr_client, f"{http.base_url}{API}/status/{job_id}/",
                                  max_wait=30)


def test_waiter_raises_for_an_aborted_job(
    dr_client: RESTClientObject, http: httpx.Client
) -> None:
    job_id = submit(http, SLEEP, {"seconds": 30})
    assert http.delete(f"{API}/status/{job_id}/").status_code == 202
    wait_for_status(http, job_id, "ABORTED", timeout=10)

    # A relative URL is joined to the endpoint, as DataRobot's own routes are.
    with pytest.raises(AsyncProcessUnsuccessfulError, match="ABORTED"):
        wait_for_async_resolution(dr_client, f"genai/status/{job_id}/", max_wait=30)


# -- the classic status route ---------------------------------------------------------

CLASSIC = "/api/v2/status"


def test_the_classic_route_answers_200_until_done_and_for_a_job_that_made_nothing(
        http: httpx.Client) -> None:
    job_id = submit(http, SLEEP, {"seconds": 30})
    wait_for_status(http, job_id, "RUNNING")  # so that both reads below see one state
    running = http.get(f"{CLASSIC}/{job_id}/")
    assert (running.status_code, running.headers["retry-after"]) == (200, "1")
    assert running.json() == http.get(f"{API}/status/{job_id}/").json()
    aborted = http.delete(f"{CLASSIC}/{job_id}/")
    assert aborted.status_code == 202
    wait_for_status(http, job_id, "ABORTED", timeout=10)
    assert http.get(f"{CLASSIC}/{job_id}/").json()["status"] == "ABORTED"

    done_id = submit(http, SLEEP, {"seconds": 0.1})
    held = http.get(f"{CLASSIC}/{done_id}/", params={"waitSeconds": 10})
    wait_for_status(http, done_id, "COMPLETED")
    completed = http.get(f"{CLASSIC}/{done_id}/", follow_redirects=False)
    # A sleep makes no resource: 200 with the body, which the SDK's waiter returns.
    assert (completed.status_code, completed.json()["status"]) == (200, "COMPLETED")
    assert held.status_code == 200


def test_the_classic_route_refuses_bad_and_unknown_ids_like_the_seed_route(
        http: httpx.Client) -> None:
    assert http.get(f"{CLASSIC}/{uuid4()}/").status_code == 404
    bad = http.get(f"{CLASSIC}/not-a-uuid/")
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "statusId"]
    assert http.get(f"{CLASSIC}/{uuid4()}/", headers={"Authorization": ""}).status_code == 401
