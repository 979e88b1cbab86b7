"""Scale-out on PostgreSQL: several API and worker processes on one database,
killed workers, a restarted database, aborts that cross processes."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.pg_support import scratch_store
from tests.support import (
    Server,
    ServiceProcess,
    poll_until,
    start_server,
    submit,
    wait_for_status,
)

pytestmark = pytest.mark.slow

JOBS = 2000
SUBMIT_THREADS = 8


@dataclass
class Cluster:
    apis: list[Server]
    workers: list[ServiceProcess] = field(default_factory=list)

    def add_worker(self, name: str = "worker") -> ServiceProcess:
        worker = self.apis[0].start_worker(name=name)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for process in [*self.workers, *(api.service for api in self.apis)]:
            process.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with scratch_store("postgres") as url:
        assert url is not None
        yield url


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Callable[[int, int], Cluster]]:
    made: list[Cluster] = []

    def build(apis: int, workers: int) -> Cluster:
        first = start_server(tmp_path, "--workers", "0", database_url=pg_url)
        others = [start_server(tmp_path, "--workers", "0", database_url=pg_url,
                               admin_token=first.admin_token) for _ in range(apis - 1)]
        built = Cluster([first, *others])
        made.append(built)
        for n in range(workers):
            built.add_worker(name=f"worker-{n}")
        return built

    try:
        yield build
    finally:
        for built in made:
            built.close()


def runs(record: Path) -> list[tuple[str, int, int]]:
    """(job id, pid, attempt) per recorded run of `test.count`."""
    if not record.exists():
        return []
    rows = []
    for line in record.read_text().splitlines():
        job_id, pid, attempt = line.split()
        rows.append((job_id, int(pid), int(attempt)))
    return rows


def completed_count(client: httpx.Client, job_type: str) -> int:
    page = client.get("/api/v2/genai/jobs/",
                      params={"status": "COMPLETED", "jobType": job_type, "limit": 1}).json()
    return int(page["totalCount"])


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_two_apis_and_three_workers_run_every_job_exactly_once(
    cluster: Callable[[int, int], Cluster], tmp_path: Path
) -> None:
    built = cluster(2, 3)
    record = tmp_path / "runs.log"
    clients = [api.client() for api in built.apis]
    try:
        # A long-poll on one API wakes on a completion made through the other.
        watched = submit(clients[1], "diagnostics.sleep", {"seconds": 1})
        body = clients[0].get(f"/api/v2/genai/status/{watched}/").json()
        for _ in range(10):  # INITIALIZED -> RUNNING -> COMPLETED: a few answers
            if body["status"] == "COMPLETED":
                break
            body = clients[0].get(f"/api/v2/genai/status/{watched}/",
                                  params={"waitSeconds": 30}).json()
        answered_at = time.time()
        finished = clients[1].get(f"/api/v2/genai/jobs/{watched}/").json()
        assert body["status"] == "COMPLETED"
        assert answered_at - parse_time(finished["finishedAt"]) < 1.0

        started = time.monotonic()
        ids = _submit_many(built, record)
        print(f"submitted {JOBS} jobs in {time.monotonic() - started:.1f} s")
        poll_until(lambda: completed_count(clients[0], "test.count") == JOBS, timeout=240,
                   interval=0.5, what=f"{JOBS} completed jobs")
        recorded = runs(record)
        per_job = Counter(job_id for job_id, _, _ in recorded)
        assert set(per_job) == set(ids)
        assert max(per_job.values()) == 1  # each handler ran exactly once
        assert len({pid for _, pid, _ in recorded}) == 3  # all three workers took part
        for job_id in ids[:: JOBS // 50]:
            one, other = (client.get(f"/api/v2/genai/status/{job_id}/") for client in clients)
            assert one.json() == other.json()
            assert one.json()["status"] == "COMPLETED"
    finally:
        for client in clients:
            client.close()


def _submit_many(built: Cluster, record: Path) -> list[str]:
    def submit_batch(batch: int) -> list[str]:
        api = built.apis[batch % len(built.apis)]
        with api.client() as client:
            return [submit(client, "test.count", {"record": str(record)})
                    for _ in range(JOBS // SUBMIT_THREADS)]

    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        return [job_id for batch in pool.map(submit_batch, range(SUBMIT_THREADS))
                for job_id in batch]


def test_a_killed_worker_s_job_is_recovered_on_another(
    cluster: Callable[[int, int], Cluster], tmp_path: Path
) -> None:
    built = cluster(1, 0)
    record = tmp_path / "runs.log"
    doomed = built.add_worker("doomed")
    with built.apis[0].client() as client:
        job_id = submit(client, "test.async_sleep",
                        {"seconds": 60, "retry_seconds": 0.5, "record": str(record)})
        wait_for_status(client, job_id, "RUNNING")
        doomed.kill()
        rescuer = built.add_worker("rescuer")
        job = wait_for_status(client, job_id, "COMPLETED", timeout=30)
    assert job["attempts"] == 2
    pids = [int(line.split()[0]) for line in record.read_text().splitlines()
            if line.split()[2] == "end"]
    assert pids == [rescuer.pid]


def test_an_abort_sent_to_one_api_stops_the_job_on_a_worker_elsewhere(
    cluster: Callable[[int, int], Cluster], tmp_path: Path
) -> None:
    built = cluster(2, 1)
    record = tmp_path / "runs.log"
    with built.apis[0].client() as submitter, built.apis[1].client() as aborter:
        job_id = submit(submitter, "test.async_sleep", {"seconds": 60, "record": str(record)})
        wait_for_status(submitter, job_id, "RUNNING")
        poll_until(record.exists, timeout=10, what="the handler to start")
        asked = time.monotonic()
        assert aborter.delete(f"/api/v2/genai/status/{job_id}/").status_code == 202
        job = wait_for_status(submitter, job_id, "ABORTED", timeout=10)
        took = time.monotonic() - asked
    assert took < 5
    assert "its handler stopped" in job["message"]
    events = [line.split()[2] for line in record.read_text().splitlines()]
    assert events == ["start", "cancelled"]


def _pg_ctl(action: str) -> None:
    version = sorted(path.name for path in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action,
                    *(["-m", "fast"] if action == "stop" else [])],
                   check=True, timeout=60, capture_output=True)


def _ready(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_a_database_restart_loses_no_job_and_leaves_none_stuck(
    cluster: Callable[[int, int], Cluster],
) -> None:
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster")
    built = cluster(1, 2)
    api = built.apis[0]
    with api.client() as client:
        ids = [submit(client, "diagnostics.sleep", {"seconds": 1}) for _ in range(30)]
        poll_until(lambda: client.get("/api/v2/genai/jobs/", params={
            "status": "RUNNING", "limit": 1}).json()["totalCount"] > 0,
            timeout=20, what="jobs running")
        try:
            _pg_ctl("stop")
            poll_until(lambda: _ready(api.url) == 503, timeout=20, what="/readyz failing")
        finally:
            _pg_ctl("start")
        poll_until(lambda: _ready(api.url) == 200, timeout=30, what="/readyz passing again")
        late = submit(client, "diagnostics.sleep", {"seconds": 0})
        for job_id in [*ids, late]:
            job = wait_for_status(client, job_id, {"COMPLETED", "ERROR"}, timeout=90)
            assert job["status"] == "COMPLETED", job
