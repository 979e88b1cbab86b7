"""Noisy tenants through a real server on both stores: a flood from one tenant does
not keep another tenant's job waiting, and the limits an admin sets over HTTP are
answered with 429 + Retry-After (422 for a priority), store nothing, and show in
/metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from genai_jobs.client import Client, TooManyRequests
from tests.pg_support import scratch_store
from tests.support import Server, poll_until, run_cli, running_server, submit

API = "/api/v2/genai"
FLOOD = 120
# Each flood job holds a worker slot this long: a FIFO queue would keep the other
# tenant's job waiting FLOOD * FLOOD_JOB_SECONDS / CONCURRENCY = 120 s.
FLOOD_JOB_SECONDS = 2.0
CONCURRENCY = 2
# What issue 10 asks: another tenant's job starts within 5 s of a flood.
START_BOUND_SECONDS = 5.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with scratch_store(request.param) as url, running_server(
            tmp_path_factory.mktemp(f"tenants-{request.param}"), "--workers", "1",
            "--concurrency", str(CONCURRENCY), database_url=url) as running:
        yield running


@pytest.fixture
def limited(api: Server) -> Iterator[tuple[httpx.Client, httpx.Client, str]]:
    """(admin client, tenant client, tenant name) for a fresh tenant; its limits are
    lifted afterwards."""
    name = f"t{time.monotonic_ns()}"
    with api.client() as admin, api.client(api.make_token(name)) as tenant:
        yield admin, tenant, name
        admin.delete(f"{API}/tenants/{name}/limits/")


def set_limits(admin: httpx.Client, tenant: str, **limits: object) -> dict[str, object]:
    response = admin.put(f"{API}/tenants/{tenant}/limits/", json=limits)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def job_count(client: httpx.Client) -> int:
    return int(client.get(f"{API}/jobs/", params={"limit": 1}).json()["totalCount"])


def test_a_flood_from_one_tenant_does_not_hold_back_another(api: Server) -> None:
    with api.client(api.make_token("flooder")) as flooder, \
            api.client(api.make_token("patient")) as patient:
        flood = [submit(flooder, "diagnostics.sleep", {"seconds": FLOOD_JOB_SECONDS})
                 for _ in range(FLOOD)]
        poll_until(lambda: flooder.get(f"{API}/jobs/", params={
            "status": "RUNNING", "limit": 1}).json()["totalCount"] >= CONCURRENCY,
            20, what="the flood filling the workers")
        submitted = time.monotonic()
        mine = submit(patient, "diagnostics.sleep", {"seconds": 0})

        def started() -> bool:
            body = patient.get(f"{API}/jobs/{mine}/", params={"waitSeconds": 1}).json()
            return body["startedAt"] is not None

        poll_until(started, 60, interval=0, what="the patient tenant's job starting")
        waited = time.monotonic() - submitted
        for job_id in flood:
            flooder.delete(f"{API}/status/{job_id}/")
    assert waited <= START_BOUND_SECONDS, f"the other tenant's job waited {waited:.1f} s"


def test_a_full_queue_is_a_429_with_retry_after_and_stores_nothing(
        api: Server, limited: tuple[httpx.Client, httpx.Client, str]) -> None:
    admin, tenant, name = limited
    # No job of the tenant may run: its jobs stay queued.
    body = set_limits(admin, name, maxQueued=2, maxRunning=0)
    assert body["limits"] == {"maxRunning": 0, "maxQueued": 2, "submitsPerSecond": None,
                              "maxPriority": None}
    later = {"jobType": "diagnostics.sleep", "payload": {"seconds": 0}}
    for _ in range(2):
        assert tenant.post(f"{API}/jobs/", json=later).status_code == 202
    refused = tenant.post(f"{API}/jobs/", json=later)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert set(refused.json()) == {"detail"}
    assert "at most 2 queued jobs" in refused.json()["detail"]
    assert job_count(tenant) == 2
    metrics = httpx.get(f"{api.url}/metrics", timeout=10).text
    assert re.search(rf'genai_jobs_tenant_limit_refusals_total{{limit="max_queued",'
                     rf'tenant="{name}"}} 1\.0', metrics), metrics
    assert f'genai_jobs_tenant_limit{{limit="max_queued",tenant="{name}"}} 2.0' in metrics
    assert f'genai_jobs_tenant_jobs{{state="queued",tenant="{name}"}} 2.0' in metrics


def test_a_submit_rate_limit_answers_when_to_come_back(
        limited: tuple[httpx.Client, httpx.Client, str]) -> None:
    admin, tenant, name = limited
    set_limits(admin, name, submitsPerSecond=0.5)  # one every two seconds
    quick = {"jobType": "diagnostics.sleep", "payload": {"seconds": 0}}
    assert tenant.post(f"{API}/jobs/", json=quick).status_code == 202
    refused = tenant.post(f"{API}/jobs/", json=quick)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert job_count(tenant) == 1
    time.sleep(retry_after)  # the wait the server asked for, at most 2 s
    assert tenant.post(f"{API}/jobs/", json=quick).status_code == 202


def test_a_priority_above_the_cap_is_a_422_naming_the_field(
        limited: tuple[httpx.Client, httpx.Client, str]) -> None:
    admin, tenant, name = limited
    set_limits(admin, name, maxPriority=5)
    job = {"jobType": "diagnostics.sleep", "payload": {"seconds": 0}}
    refused = tenant.post(f"{API}/jobs/", json={**job, "priority": 6})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "priority"]
    assert "above" in refused.json()["detail"][0]["msg"]
    assert job_count(tenant) == 0
    assert tenant.post(f"{API}/jobs/", json={**job, "priority": 5}).status_code == 202


def test_defaults_for_every_tenant_and_who_may_see_and_set_them(
        limited: tuple[httpx.Client, httpx.Client, str]) -> None:
    admin, tenant, name = limited
    try:
        set_limits(admin, "*", maxPriority=3, maxRunning=4)
        own = set_limits(admin, name, maxRunning=1)
        assert own["effectiveLimits"] == {"maxRunning": 1, "maxQueued": None,
                                          "submitsPerSecond": None, "maxPriority": 3}
        # A tenant reads its own entry, nobody else's, and sets nothing.
        mine = tenant.get(f"{API}/tenants/{name}/limits/")
        assert mine.status_code == 200
        assert mine.json()["effectiveLimits"]["maxPriority"] == 3
        assert tenant.get(f"{API}/tenants/*/limits/").status_code == 404
        assert [entry["tenant"] for entry in tenant.get(f"{API}/tenants/").json()["data"]] == [
            name]
        forbidden = tenant.put(f"{API}/tenants/{name}/limits/", json={"maxRunning": 100})
        assert forbidden.status_code == 403
        assert "admin" in forbidden.json()["detail"]
        listed = {entry["tenant"] for entry in admin.get(f"{API}/tenants/").json()["data"]}
        assert {"*", name} <= listed
        bad = admin.put(f"{API}/tenants/{name}/limits/", json={"maxRunning": "2"})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "maxRunning"]
    finally:
        assert admin.delete(f"{API}/tenants/*/limits/").status_code == 204


def test_openapi_declares_the_new_answers(api: Server) -> None:
    document = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    assert "429" in document["paths"][f"{API}/jobs/"]["post"]["responses"]
    assert "403" in document["paths"][f"{API}/tenants/{{tenant}}/limits/"]["put"]["responses"]


def test_the_cli_sets_limits_a_running_server_applies(
        api: Server, limited: tuple[httpx.Client, httpx.Client, str]) -> None:
    admin, tenant, name = limited
    db = ["--database-url", api.database_url]
    done = run_cli("tenant", "limits", name, "--max-priority", "2", "--max-queued", "50", *db)
    assert done.returncode == 0, done.stderr
    assert "max queued 50" in done.stdout
    assert "max priority 2" in done.stdout
    job = {"jobType": "diagnostics.sleep", "payload": {"seconds": 0}, "priority": 3}
    # Applied within the servers' one-second cache of limits.
    poll_until(lambda: tenant.post(f"{API}/jobs/", json=job).status_code == 422, 5,
               interval=0.2, what="the server refusing priority 3")
    lifted = run_cli("tenant", "limits", name, "--max-priority", "none", *db)
    assert "max queued 50, submits/s -, max priority -" in lifted.stdout
    listing = run_cli("tenant", "list", *db)
    assert re.search(rf"{name}\s.*\s50\s", listing.stdout), listing.stdout
    refused = run_cli("tenant", "limits", name, "--max-running", "-1", *db, check=False)
    assert refused.returncode != 0
    assert "--max-running" in refused.stderr
    assert admin.get(f"{API}/tenants/{name}/limits/").json()["limits"]["maxQueued"] == 50


def test_our_client_and_cli_say_the_tenant_is_limited(
        api: Server, limited: tuple[httpx.Client, httpx.Client, str]) -> None:
    admin, _, name = limited
    set_limits(admin, name, maxQueued=0)
    token = api.make_token(name)
    with Client(api.url, token=token) as client, \
            pytest.raises(TooManyRequests) as refused:
        client.submit("diagnostics.sleep", {"seconds": 0})
    assert refused.value.status_code == 429
    assert "at most 0 queued jobs" in str(refused.value)
    done = run_cli("submit", "diagnostics.sleep", "--payload", '{"seconds": 0}',
                   "--url", api.url, "--token", token, check=False)
    assert done.returncode == 1
    assert "(429)" in done.stderr
    assert "retry in" in done.stderr
