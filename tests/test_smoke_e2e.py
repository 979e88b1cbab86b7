from __future__ import annotations

from tests.support import Server, submit, wait_for_status


def test_a_sleep_job_runs_to_completion(server: Server) -> None:
    with server.client() as client:
        job_id = submit(client, "diagnostics.sleep", {"seconds": 0.3})
        job = wait_for_status(client, job_id, "COMPLETED")
    assert job["result"] == {"slept": 0.3}
    assert job["progress"] == 1.0
