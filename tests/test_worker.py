"""Workers as real processes: crashes, aborts, deadlines, retries and shutdown.

The API runs with `--workers 0`; jobs run in separate `genai-jobs worker`
processes that the tests kill, stop and restart.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    Server,
    ServiceProcess,
    free_port,
    poll_until,
    start_server,
    submit,
    wait_for_status,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, "--workers", "0")
    workers: list[ServiceProcess] = []
    original = running.start_worker

    def start_worker(*extra: str, **kwargs: object) -> ServiceProcess:
        worker = original(*extra, **kwargs)  # type: ignore[arg-type]
        workers.append(worker)
        return worker

    running.start_worker = start_worker  # type: ignore[method-assign]
    try:
        yield running
    finally:
        for worker in workers:
            worker.close()
        running.service.close()


def runs(record: Path) -> list[tuple[int, int, str]]:
    """(pid, attempt, event) for each line a sample handler recorded."""
    if not record.exists():
        return []
    rows = []
    for line in record.read_text().splitlines():
        pid, attempt, event, _ = line.split()
        rows.append((int(pid), int(attempt), event))
    return rows


def started_on(record: Path, count: int = 1) -> list[tuple[int, int, str]]:
    def enough() -> list[tuple[int, int, str]] | None:
        events = runs(record)
        return events if sum(event == "start" for _, _, event in events) >= count else None

    return poll_until(enough, timeout=20, what=f"{count} start(s) in {record.name}")


def test_a_killed_worker_s_job_is_recovered_within_the_lease(api: Server, tmp_path: Path) -> None:
    record = tmp_path / "runs.log"
    doomed = api.start_worker(name="doomed")
    with api.client() as client:
        job_id = submit(client, "test.async_sleep", {"seconds": 1.5, "record": str(record)})
        started_on(record)
        doomed.kill()
        api.start_worker(name="rescuer")
        job = wait_for_status(client, job_id, "COMPLETED", timeout=30)
    events = runs(record)
    assert [event for _, _, event in events] == ["start", "start", "end"]
    assert events[0][0] == doomed.pid
    assert events[1][0] != doomed.pid
    assert job["attempts"] == 2


def test_a_job_whose_attempts_are_spent_when_its_worker_dies_is_an_error(
    api: Server, tmp_path: Path
) -> None:
    record = tmp_path / "runs.log"
    doomed = api.start_worker(name="doomed")
    with api.client() as client:
        job_id = submit(client, "test.async_sleep", {"seconds": 30, "record": str(record)},
                        maxAttempts=1)
        started_on(record)
        doomed.kill()
        job = wait_for_status(client, job_id, "ERROR", timeout=30)
    assert "worker lost" in job["message"]
    assert job["code"] == 1


@pytest.mark.parametrize("job_type", ["test.async_sleep", "test.sync_sleep"])
def test_abort_stops_a_running_handler_before_the_job_is_aborted(
    api: Server, tmp_path: Path, job_type: str
) -> None:
    record = tmp_path / "runs.log"
    api.start_worker()
    with api.client() as client:
        job_id = submit(client, job_type, {"seconds": 60, "record": str(record)})
        started_on(record)
        answer = client.delete(f"/api/v2/genai/status/{job_id}/")
        assert answer.status_code == 202
        assert answer.json()["status"] == "RUNNING"
        assert "abort requested" in answer.json()["message"]
        job = wait_for_status(client, job_id, "ABORTED", timeout=5)
    assert "its handler stopped" in job["message"]
    assert "end" not in [event for _, _, event in runs(record)]
    if job_type == "test.async_sleep":
        assert [event for _, _, event in runs(record)] == ["start", "cancelled"]


@pytest.mark.parametrize("job_type", ["test.async_sleep", "test.sync_sleep"])
def test_a_deadline_stops_a_running_handler(api: Server, tmp_path: Path, job_type: str) -> None:
    record = tmp_path / "runs.log"
    api.start_worker()
    with api.client() as client:
        job_id = submit(client, job_type, {"seconds": 60, "record": str(record)}, expiresIn=1.5)
        job = wait_for_status(client, job_id, "EXPIRED", timeout=10)
    assert job["code"] == 1
    assert "deadline" in job["message"]
    assert "handler was stopped" in job["message"]
    assert "end" not in [event for _, _, event in runs(record)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_handler_that_ignores_its_deadline_expires_once_it_returns(
    api: Server, tmp_path: Path
) -> None:
    """A sync handler cannot be interrupted: EXPIRED is written when it has returned,
    and meanwhile the worker waits quietly instead of spinning."""
    record = tmp_path / "runs.log"
    worker = api.start_worker()
    with api.client() as client:
        job_id = submit(client, "test.stubborn", {"seconds": 3, "record": str(record)},
                        expiresIn=0.5)
        started_on(record)
        cpu_before = cpu_seconds(worker.pid)
        job = wait_for_status(client, job_id, "EXPIRED", timeout=15)
        cpu_used = cpu_seconds(worker.pid) - cpu_before
    assert [event for _, _, event in runs(record)] == ["start", "end"]
    assert "handler was stopped" in job["message"]
    assert cpu_used < 1.0  # about 3 s of waiting, not of busy looping


def test_a_queued_job_past_its_deadline_expires_without_any_worker(api: Server) -> None:
    with api.client() as client:
        job_id = submit(client, "diagnostics.sleep", {"seconds": 1}, expiresIn=0.5)
        job = wait_for_status(client, job_id, "EXPIRED", timeout=10)
    assert job["startedAt"] is None
    assert job["code"] == 1


def test_failed_attempts_are_retried_with_back_off(api: Server) -> None:
    api.start_worker()
    with api.client() as client:
        succeeds = submit(client, "test.flaky", {"fail_attempts": 2}, maxAttempts=3)
        fails = submit(client, "test.flaky", {"fail_attempts": 5}, maxAttempts=2)
        done = wait_for_status(client, succeeds, "COMPLETED")
        failed = wait_for_status(client, fails, "ERROR")
    assert done["attempts"] == 3
    assert done["result"] == {"attempt": 3}
    assert failed["attempts"] == 2
    assert "planned failure on attempt 2" in failed["message"]
    assert "Traceback" not in failed["message"]


def test_a_permanent_error_is_not_retried(api: Server) -> None:
    api.start_worker()
    with api.client() as client:
        job = wait_for_status(client, submit(client, "test.permanent_failure", maxAttempts=5),
                              "ERROR")
    assert job["attempts"] == 1
    assert "the input can never work" in job["message"]


def test_a_result_that_is_not_json_fails_the_job_cleanly(api: Server) -> None:
    api.start_worker()
    with api.client() as client:
        job = wait_for_status(client, submit(client, "test.bad_result", maxAttempts=3), "ERROR")
    assert job["attempts"] == 1
    assert "the result is not JSON" in job["message"]


def test_an_attempt_over_its_time_out_is_stopped_and_counted(api: Server) -> None:
    api.start_worker()
    with api.client() as client:
        job = wait_for_status(client, submit(client, "test.slow_attempt", {"seconds": 30},
                                             maxAttempts=2), "ERROR", timeout=15)
    assert job["attempts"] == 2
    assert "longer than 0.5 s" in job["message"]


def test_sigterm_lets_a_short_job_finish_and_exits_zero(api: Server, tmp_path: Path) -> None:
    record = tmp_path / "runs.log"
    worker = api.start_worker()
    with api.client() as client:
        job_id = submit(client, "test.async_sleep", {"seconds": 1, "record": str(record)})
        started_on(record)
        assert worker.terminate() == 0
        job = client.get(f"/api/v2/genai/jobs/{job_id}/").json()
    assert job["status"] == "COMPLETED"


def test_sigterm_releases_a_long_job_for_another_worker(api: Server, tmp_path: Path) -> None:
    record = tmp_path / "runs.log"
    worker = api.start_worker(env={"GENAI_JOBS_SHUTDOWN_GRACE_SECONDS": "0.5"})
    with api.client() as client:
        job_id = submit(client, "test.async_sleep", {"seconds": 3, "record": str(record)})
        started_on(record)
        assert worker.terminate() == 0
        released = client.get(f"/api/v2/genai/jobs/{job_id}/").json()
        assert released["status"] == "INITIALIZED"
        assert "released" in released["message"]
        api.start_worker(name="next")
        job = wait_for_status(client, job_id, "COMPLETED", timeout=20)
    assert job["attempts"] == 1  # a release does not spend an attempt


def test_two_worker_processes_run_each_job_exactly_once(api: Server, tmp_path: Path) -> None:
    records = [tmp_path / f"job-{n}.log" for n in range(40)]
    api.start_worker(name="a")
    api.start_worker(name="b")
    with api.client() as client:
        ids = [submit(client, "test.async_sleep", {"seconds": 0.05, "record": str(path)})
               for path in records]
        for job_id in ids:
            wait_for_status(client, job_id, "COMPLETED", timeout=30)
    pids = set()
    for path in records:
        events = runs(path)
        assert [event for _, _, event in events] == ["start", "end"], path.name
        pids.add(events[0][0])
    assert len(pids) == 2  # both workers took part


def test_killing_the_api_loses_no_accepted_job(tmp_path: Path) -> None:
    first = start_server(tmp_path, "--workers", "0")
    try:
        with first.client() as client:
            ids = [submit(client, "diagnostics.sleep", {"seconds": 0}) for _ in range(20)]
    finally:
        first.service.kill()
        first.service.close()
    second = start_server(tmp_path, "--workers", "1", admin_token=first.admin_token)
    try:
        with second.client() as client:
            for job_id in ids:
                wait_for_status(client, job_id, "COMPLETED")
    finally:
        second.service.close()


def test_a_worker_that_lost_its_lease_cannot_finish_the_job(api: Server, tmp_path: Path) -> None:
    """A paused worker (GC pause, frozen VM) whose lease lapsed must not write an outcome
    once it resumes: the job belongs to the worker that took it back."""
    record = tmp_path / "runs.log"
    paused = api.start_worker(name="paused")
    with api.client() as client:
        job_id = submit(client, "test.async_sleep",
                        {"seconds": 60, "retry_seconds": 2, "record": str(record)})
        started_on(record)
        paused.freeze_between_writes(api.database_url)
        try:
            poll_until(lambda: client.get(f"/api/v2/genai/jobs/{job_id}/").json()["status"]
                       == "INITIALIZED", timeout=15, what="the lapsed lease to be taken back")
            rescuer = api.start_worker(name="rescuer")
            started_on(record, count=2)
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        job = wait_for_status(client, job_id, "COMPLETED", timeout=20)
    by_pid: dict[int, list[str]] = {}
    for pid, _, event in runs(record):
        by_pid.setdefault(pid, []).append(event)
    assert by_pid[rescuer.pid] == ["start", "end"]
    assert by_pid[paused.pid] == ["start", "cancelled"]  # stopped once it saw the loss
    assert job["attempts"] == 2


def test_a_handler_that_ignores_shutdown_does_not_keep_the_worker_alive(
    api: Server, tmp_path: Path
) -> None:
    """SIGTERM: after the grace and the stop wait, the worker exits 0 even though a sync
    handler ignores the request; its job is taken back once the lease lapses."""
    record = tmp_path / "runs.log"
    worker = api.start_worker(env={"GENAI_JOBS_SHUTDOWN_GRACE_SECONDS": "0.2",
                                   "GENAI_JOBS_SHUTDOWN_STOP_WAIT_SECONDS": "0.5"})
    with api.client() as client:
        job_id = submit(client, "test.stubborn", {"seconds": 60, "record": str(record)},
                        maxAttempts=2)
        started_on(record)
        started = time.monotonic()
        assert worker.terminate(timeout=20) == 0
        assert time.monotonic() - started < 10
        assert "did not stop" in worker.output()
        job = wait_for_status(client, job_id, "INITIALIZED", timeout=15)
    assert "worker lost" in job["message"]


def test_a_worker_serves_its_metrics_when_asked(api: Server) -> None:
    port = free_port()
    api.start_worker("--metrics-port", str(port))
    with api.client() as client:
        wait_for_status(client, submit(client, "test.flaky", {"fail_attempts": 0}), "COMPLETED")
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'genai_jobs_attempts_finished_total{job_type="test.flaky",outcome="COMPLETED"} 1.0' \
        in metrics


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_worker_runs_at_most_its_concurrency_at_once_and_keeps_its_slots_busy(
        api: Server, tmp_path: Path, concurrency: int) -> None:
    """A slot is given to the next job as soon as a handler returns, while the
    outcome is still being written (worker.py `_winding_down`): never one more."""
    record = tmp_path / "runs.log"
    api.start_worker("--concurrency", str(concurrency), name="bounded")
    jobs = 3 * concurrency + 1
    with api.client() as client:
        ids = [submit(client, "test.async_sleep", {"seconds": 0.3, "record": str(record)})
               for _ in range(jobs)]
        for job_id in ids:
            wait_for_status(client, job_id, "COMPLETED", timeout=30)
    events = sorted((float(line.split()[3]), line.split()[2])
                    for line in record.read_text().splitlines())
    running = most = 0
    for _, event in events:  # an end sorts before a start at the same instant: it is first
        running += 1 if event == "start" else -1
        most = max(most, running)
    assert sum(event == "start" for _, event in events) == jobs
    assert most == concurrency
