"""Authentication and tenancy of the HTTP API against a real `genai-jobs serve`:
tokens (Bearer and DataRobot's Token scheme), revocation through the CLI, tenant
isolation (another tenant's job is an unknown id) and the admin's reach."""

from __future__ import annotations

import re
from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest

from tests.support import Server, run_cli, submit, wait_for_status

API = "/api/v2/genai"
SLEEP = "diagnostics.sleep"
UNKNOWN_ID = "e900225c-0629-4e96-be6e-86a17a309645"
# Every route under /api/ needs a token.
ROUTES = [
    ("GET", f"{API}/status/{UNKNOWN_ID}/"),
    ("DELETE", f"{API}/status/{UNKNOWN_ID}/"),
    ("POST", f"{API}/jobs/"),
    ("GET", f"{API}/jobs/"),
    ("GET", f"{API}/jobs/{UNKNOWN_ID}/"),
    ("GET", f"{API}/jobTypes/"),
    ("GET", "/api/v2/version/"),
]
SUBMISSION = {"jobType": SLEEP, "payload": {"seconds": 0}}
FEW_SECONDS = 8.0


def status_path(job_id: str) -> str:
    return f"{API}/status/{job_id}/"


def job_path(job_id: str) -> str:
    return f"{API}/jobs/{job_id}/"


def check_unauthorized(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return str(body["detail"])


def check_not_found(response: httpx.Response, job_id: str) -> str:
    """A 404 whose detail, the id aside, is the detail of an unknown id."""
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str)
    return str(body["detail"]).replace(job_id, "<id>")


def create_token(server: Server, tenant: str) -> tuple[str, str]:
    """(token id, secret) from the real CLI."""
    out = run_cli("token", "create", "--tenant", tenant, "--database-url",
                  server.database_url).stdout
    match = re.search(r"Created token ([0-9a-f-]{36}) ", out)
    assert match, out
    return match.group(1), out.strip().splitlines()[-1]


def raw_client(server: Server, authorization: str | None = None) -> httpx.Client:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    return client.request(method, path, json=SUBMISSION if method == "POST" else None)


@pytest.fixture(scope="module")
def tenant_a(server: Server) -> str:
    return f"auth-a-{uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def token_a(server: Server, tenant_a: str) -> str:
    return server.make_token(tenant_a)


@pytest.fixture(scope="module")
def token_b(server: Server) -> str:
    return server.make_token(f"auth-b-{uuid4().hex[:8]}")


@pytest.fixture
def client_a(server: Server, token_a: str) -> Iterator[httpx.Client]:
    with server.client(token_a) as client:
        yield client


@pytest.fixture
def client_b(server: Server, token_b: str) -> Iterator[httpx.Client]:
    with server.client(token_b) as client:
        yield client


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


# -- refused tokens -------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_request_without_authorization_is_401(server: Server, method: str, path: str) -> None:
    with raw_client(server) as client:
        check_unauthorized(call(client, method, path))


@pytest.mark.parametrize("header", [
    "Bearer",
    "Token",
    "Basic dXNlcjpwYXNzd29yZA==",
    "gj_no_scheme_at_all",
    "Bearer:gj_colon_instead_of_space",
    "Digest username=x",
])
def test_a_malformed_authorization_header_is_401(server: Server, header: str) -> None:
    with raw_client(server, header) as client:
        check_unauthorized(client.get(f"{API}/jobs/"))


def test_the_admin_token_in_an_unknown_scheme_is_401(server: Server) -> None:
    with raw_client(server, f"Basic {server.admin_token}") as client:
        check_unauthorized(client.get(f"{API}/jobs/"))


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_an_unknown_token_is_401(server: Server, scheme: str, method: str, path: str) -> None:
    with raw_client(server, f"{scheme} gj_{uuid4().hex}") as client:
        check_unauthorized(call(client, method, path))


def test_a_revoked_token_is_401_from_then_on(server: Server) -> None:
    token_id, secret = create_token(server, f"auth-revoked-{uuid4().hex[:8]}")
    with raw_client(server, f"Bearer {secret}") as bearer, \
            raw_client(server, f"Token {secret}") as token:
        job_id = submit(bearer, SLEEP, {"seconds": 0})
        assert bearer.get(status_path(job_id)).status_code == 200
        assert token.get(status_path(job_id)).status_code == 200

        run_cli("token", "revoke", token_id, "--database-url", server.database_url)

        for method, path in [*ROUTES, ("GET", status_path(job_id))]:
            check_unauthorized(call(bearer, method, path))
            check_unauthorized(call(token, method, path))


def test_an_unknown_token_cannot_submit_anything(server: Server, admin: httpx.Client) -> None:
    before = admin.get(f"{API}/jobs/", params={"limit": 1}).json()["totalCount"]
    with raw_client(server, f"Bearer gj_{uuid4().hex}") as client:
        check_unauthorized(client.post(f"{API}/jobs/", json=SUBMISSION))
    assert admin.get(f"{API}/jobs/", params={"limit": 1}).json()["totalCount"] == before


# -- accepted schemes ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "bearer", "token"])
def test_token_scheme_works_like_bearer(
    server: Server, token_a: str, tenant_a: str, scheme: str
) -> None:
    with raw_client(server, f"{scheme} {token_a}") as client:
        response = client.post(f"{API}/jobs/", json=SUBMISSION)
        assert response.status_code == 202, response.text
        job_id = response.json()["statusId"]
        assert client.get(status_path(job_id)).status_code == 200
        job = client.get(job_path(job_id)).json()
        assert job["tenant"] == tenant_a
        listed = client.get(f"{API}/jobs/", params={"limit": 1000}).json()
        assert job_id in [item["statusId"] for item in listed["data"]]
        version = client.get("/api/v2/version/")
        assert version.status_code == 200
        assert version.json()["versionString"] == "2.49.0"


def test_version_answers_datarobots_client(admin: httpx.Client) -> None:
    body = admin.get("/api/v2/version/").json()
    assert set(body) == {"major", "minor", "versionString", "releasedVersion"}
    assert (body["major"], body["minor"], body["versionString"]) == (2, 49, "2.49.0")
    assert isinstance(body["releasedVersion"], str)


# -- tenant isolation ----------------------------------------------------------------


def test_another_tenants_job_is_an_unknown_id(
    admin: httpx.Client, client_a: httpx.Client, client_b: httpx.Client
) -> None:
    job_id = submit(client_a, SLEEP, {"seconds": 30})
    wait_for_status(client_a, job_id, "RUNNING")
    unknown = str(uuid4())
    try:
        expected = check_not_found(client_b.get(status_path(unknown)), unknown)
        assert check_not_found(client_b.get(job_path(unknown)), unknown) == expected

        assert check_not_found(client_b.get(status_path(job_id)), job_id) == expected
        assert check_not_found(client_b.get(status_path(job_id), params={"waitSeconds": 1}),
                               job_id) == expected
        assert check_not_found(client_b.get(job_path(job_id)), job_id) == expected
        assert check_not_found(client_b.get(job_path(job_id), params={"waitSeconds": 1}),
                               job_id) == expected
        assert check_not_found(client_b.delete(status_path(job_id)), job_id) == expected
        assert check_not_found(client_b.delete(status_path(unknown)), unknown) == expected

        pages: list[dict[str, str | int]] = [{}, {"status": "RUNNING"},
                                             {"jobType": SLEEP, "limit": 1000}]
        for params in pages:
            page = client_b.get(f"{API}/jobs/", params=params).json()
            assert job_id not in [item["statusId"] for item in page["data"]]

        # B's abort did nothing: the job runs on, with no abort recorded.
        job = client_a.get(job_path(job_id)).json()
        assert job["status"] == "RUNNING"
        assert job["message"] == ""
    finally:
        admin.delete(status_path(job_id))
    wait_for_status(client_a, job_id, "ABORTED", timeout=FEW_SECONDS)


def test_a_tenants_list_holds_only_its_own_jobs(
    client_a: httpx.Client, client_b: httpx.Client, tenant_a: str
) -> None:
    mine = submit(client_a, SLEEP, {"seconds": 0})
    theirs = submit(client_b, SLEEP, {"seconds": 0})
    page = client_a.get(f"{API}/jobs/", params={"limit": 1000}).json()
    ids = [item["statusId"] for item in page["data"]]
    assert mine in ids
    assert theirs not in ids
    assert {item["tenant"] for item in page["data"]} == {tenant_a}
    assert page["totalCount"] == len(ids)


def test_admin_reads_lists_and_aborts_every_tenants_jobs(
    admin: httpx.Client, client_a: httpx.Client, client_b: httpx.Client, tenant_a: str
) -> None:
    job_a = submit(client_a, SLEEP, {"seconds": 30})
    job_b = submit(client_b, SLEEP, {"seconds": 0})
    wait_for_status(client_a, job_a, "RUNNING")
    wait_for_status(client_b, job_b, "COMPLETED")

    assert admin.get(status_path(job_a)).json()["status"] == "RUNNING"
    assert admin.get(status_path(job_b)).json()["status"] == "COMPLETED"
    assert admin.get(job_path(job_a)).json()["tenant"] == tenant_a

    page = admin.get(f"{API}/jobs/", params={"jobType": SLEEP, "limit": 1000}).json()
    listed = {item["statusId"]: item["tenant"] for item in page["data"]}
    assert job_a in listed
    assert job_b in listed
    assert len(set(listed.values())) >= 2

    aborted = admin.delete(status_path(job_a))
    assert aborted.status_code == 202, aborted.text
    assert aborted.json()["status"] == "RUNNING"
    assert "abort" in aborted.json()["message"].lower()
    job = wait_for_status(client_a, job_a, {"ABORTED", "COMPLETED", "ERROR", "EXPIRED"},
                          timeout=FEW_SECONDS)
    assert job["status"] == "ABORTED"

    # The admin's reach does not extend to finished jobs: they never change.
    conflict = admin.delete(status_path(job_b))
    assert conflict.status_code == 409
    assert set(conflict.json()) == {"detail"}
