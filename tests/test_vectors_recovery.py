"""Builds on separate worker processes: a SIGKILL mid-build, then a clean retry; a dataset
deleted before its build starts. The API runs with `--workers 0`."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Server, ServiceProcess, start_server, wait_for_status
from tests.vectors_support import (
    API,
    DATASETS,
    create_dataset,
    create_vdb,
    filler_text,
    sqlite_rows,
    wait_for_progress,
)

pytestmark = pytest.mark.slow

BATCH = 8


@pytest.fixture
def api(tmp_path: Any) -> Iterator[tuple[Server, list[ServiceProcess]]]:
    running = start_server(tmp_path, "--workers", "0")
    workers: list[ServiceProcess] = []
    try:
        yield running, workers
    finally:
        for worker in workers:
            worker.close()
        running.service.close()


def start_worker(server: Server, workers: list[ServiceProcess], name: str) -> ServiceProcess:
    worker = server.start_worker(name=name,
                                 env={"GENAI_JOBS_VECTOR_BUILD_BATCH_SIZE": str(BATCH)})
    workers.append(worker)
    return worker


def test_a_build_whose_worker_is_killed_starts_over_cleanly_on_another(
        api: tuple[Server, list[ServiceProcess]]) -> None:
    server, workers = api
    with server.client(timeout=60) as client:
        dataset_id = create_dataset(client, [("long.txt", filler_text(300).encode())])
        vdb = create_vdb(client, dataset_id, 16, 13, maxAttempts=2)
        job_id = vdb["buildStatusId"]
        doomed = start_worker(server, workers, "doomed")
        wait_for_progress(client, job_id, "embedded", timeout=90)
        written = sqlite_rows(server.database_url, "SELECT COUNT(*) FROM vector_batches"
                              " WHERE vdb_id = ?", (vdb["id"],))[0][0]
        doomed.kill()  # mid-build: some batches are committed, the rest never will be
        assert written >= 1
        start_worker(server, workers, "rescuer")
        job = wait_for_status(client, job_id, {"COMPLETED", "ERROR"}, timeout=90)
        check_whole_index(server, client, vdb, job)


def test_a_stale_worker_that_wakes_up_mid_rebuild_cannot_mix_into_the_index(
        api: tuple[Server, list[ServiceProcess]]) -> None:
    server, workers = api
    with server.client(timeout=60) as client:
        dataset_id = create_dataset(client, [("long.txt", filler_text(300).encode())])
        vdb = create_vdb(client, dataset_id, 16, 13, maxAttempts=2)
        job_id = vdb["buildStatusId"]
        stale = start_worker(server, workers, "stale")
        wait_for_progress(client, job_id, "embedded", timeout=90)
        stale.freeze_between_writes(server.database_url)  # mid-build: its lease lapses
        try:
            start_worker(server, workers, "rescuer")
            wait_for_progress(client, job_id, "started over: embedded", timeout=90)
        finally:
            os.kill(stale.pid, signal.SIGCONT)  # it resumes, still believing it builds
        job = wait_for_status(client, job_id, {"COMPLETED", "ERROR"}, timeout=90)
        check_whole_index(server, client, vdb, job)
        assert stale.process is not None
        assert stale.process.poll() is None


def check_whole_index(server: Server, client: httpx.Client, vdb: dict[str, Any],
                      job: dict[str, Any]) -> None:
    assert job["status"] == "COMPLETED", job
    assert job["attempts"] == 2
    assert job["result"]["attempt"] == 2
    assert job["progressMessage"].startswith("attempt 2, started over: embedded")
    total = job["result"]["chunkCount"]
    seqs = [row[0] for row in sqlite_rows(
        server.database_url, "SELECT seq FROM vector_chunks WHERE vdb_id = ? ORDER BY seq",
        (vdb["id"],))]
    assert seqs == list(range(total))  # no duplicates, no gaps, nothing of attempt 1 left
    batches = sqlite_rows(server.database_url, "SELECT first_seq, count FROM vector_batches"
                          " WHERE vdb_id = ? ORDER BY first_seq", (vdb["id"],))
    assert [first for first, _ in batches] == list(range(0, total, BATCH))
    assert sum(count for _, count in batches) == total
    info = client.get(f"{API}/vectorDatabases/{vdb['id']}/").json()
    assert (info["executionStatus"], info["chunksCount"]) == ("COMPLETED", total)
    hits = client.post(f"{API}/vectorDatabases/{vdb['id']}/search/",
                       json={"query": "The violin hides quiet songs", "k": 3}).json()["data"]
    assert "violin hides" in " ".join(hit["text"] for hit in hits)


def test_a_dataset_deleted_before_its_build_starts_fails_the_build_saying_so(
        api: tuple[Server, list[ServiceProcess]]) -> None:
    server, workers = api
    with server.client() as client:
        dataset_id = create_dataset(client, [("a.txt", b"Some words.")])
        vdb = create_vdb(client, dataset_id, 32, 13)
        assert client.delete(f"{DATASETS}/{dataset_id}/").status_code == 204
        start_worker(server, workers, "late")
        job = wait_for_status(client, vdb["buildStatusId"], {"ERROR", "COMPLETED"}, timeout=60)
    assert job["status"] == "ERROR"
    assert job["attempts"] == 1
    assert f"dataset {dataset_id} not found" in job["message"]
