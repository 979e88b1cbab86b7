"""The remote commands, run as the real `genai-jobs` script against a real server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

SLEEP = "diagnostics.sleep"
SCRIPT = shutil.which("genai-jobs", path=str(Path(sys.executable).parent))
# Every run is bounded; a hung command fails the test instead of the suite.
RUN_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@dataclass(frozen=True)
class Cli:
    url: str
    token: str

    def __call__(self, *args: str, **env: str) -> Outcome:
        assert SCRIPT is not None, "the genai-jobs script is not installed next to python"
        # Nothing from the caller's GENAI_JOBS_* may leak into what is tested.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_JOBS_")}
        clean |= {"GENAI_JOBS_URL": self.url, "GENAI_JOBS_TOKEN": self.token} | env
        done = subprocess.run(
            [SCRIPT, *args],
            capture_output=True,
            text=True,
            env=clean,
            stdin=subprocess.DEVNULL,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    def submit(self, payload: dict[str, Any], *args: str) -> str:
        outcome = self("submit", SLEEP, "--payload", json.dumps(payload), *args)
        assert outcome.code == 0, outcome.err
        return outcome.out.strip()


@pytest.fixture(scope="module")
def cli(server: Any) -> Cli:
    return Cli(server.url, server.make_token(f"cli-{uuid4().hex[:8]}"))


def assert_one_line_error(outcome: Outcome, *fragments: str) -> None:
    assert outcome.code != 0
    assert "Traceback" not in outcome.err
    assert len(outcome.err.strip().splitlines()) == 1, outcome.err
    assert outcome.err.startswith("error: ")
    for fragment in fragments:
        assert fragment in outcome.err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the commands -----------------------------------------------------------------


def test_submit_prints_the_id_alone(cli: Cli) -> None:
    outcome = cli("submit", SLEEP, "--payload", '{"seconds": 0}', "--description", "cli")
    assert outcome.code == 0
    assert outcome.err == ""
    UUID(outcome.out.strip())
    assert len(outcome.lines) == 1


def test_status_prints_fields_or_json(cli: Cli) -> None:
    status_id = cli.submit({"seconds": 0}, "--description", "look at me")
    human = cli("status", status_id)
    assert human.code == 0
    assert "statusId:" in human.out
    assert status_id in human.out
    assert "look at me" in human.out

    raw = cli("status", status_id, "--json")
    body = json.loads(raw.out)
    assert set(body) == {
        "code",
        "created",
        "description",
        "message",
        "status",
        "statusId",
        "statusType",
    }
    assert (body["statusId"], body["statusType"]) == (status_id, SLEEP)
    assert body["created"].endswith("Z")


def test_submit_wait_prints_the_id_then_the_final_line(cli: Cli) -> None:
    outcome = cli("submit", SLEEP, "--payload", '{"seconds": 0.2}', "--wait", "--timeout", "30")
    assert outcome.code == 0, outcome.err
    status_id = outcome.lines[0]
    # Off a terminal there is no progress bar: stdout holds exactly two lines.
    assert outcome.lines == [status_id, f"{status_id} COMPLETED"]
    assert outcome.err == ""


def test_wait_exits_0_for_a_completed_job(cli: Cli) -> None:
    status_id = cli.submit({"seconds": 0.5})
    outcome = cli("wait", status_id, "--timeout", "30")
    assert (outcome.code, outcome.lines) == (0, [f"{status_id} COMPLETED"])


def test_wait_exits_1_for_a_failed_job(cli: Cli) -> None:
    status_id = cli.submit({"seconds": 0, "outcome": "error"}, "--max-attempts", "1")
    outcome = cli("wait", status_id, "--timeout", "30")
    assert outcome.code == 1
    assert outcome.lines[-1].startswith(f"{status_id} ERROR: ")


def test_wait_exits_2_on_time_out_and_cancel_aborts(cli: Cli) -> None:
    status_id = cli.submit({"seconds": 60})
    timed_out = cli("wait", status_id, "--timeout", "0.5")
    assert timed_out.code == 2
    assert_one_line_error(timed_out, status_id, "after 0.5s")

    cancelled = cli("cancel", status_id)
    assert cancelled.code == 0
    assert cancelled.out.startswith(status_id)
    aborted = cli("wait", status_id, "--timeout", "30")
    assert aborted.code == 1
    assert aborted.lines[-1].startswith(f"{status_id} ABORTED")


def test_list_shows_a_table_and_json(server: Any) -> None:
    cli = Cli(server.url, server.make_token(f"cli-list-{uuid4().hex[:8]}"))
    ids = [cli.submit({"seconds": 0}) for _ in range(2)]
    for status_id in ids:
        assert cli("wait", status_id, "--timeout", "30").code == 0

    table = cli("list")
    assert table.code == 0
    for status_id in ids:
        assert status_id in table.out
    assert "2 of 2 jobs" in table.out

    raw = json.loads(cli("list", "--json", "--status", "completed", "--job-type", SLEEP).out)
    assert sorted(job["statusId"] for job in raw["data"]) == sorted(ids)
    assert json.loads(cli("list", "--json", "--status", "RUNNING").out)["data"] == []


def test_a_flag_wins_over_its_environment_variable(server: Any, cli: Cli) -> None:
    status_id = cli.submit({"seconds": 0})
    outcome = cli("status", status_id, "--url", server.url, GENAI_JOBS_URL="http://127.0.0.1:1")
    assert outcome.code == 0, outcome.err


# -- errors are one line ----------------------------------------------------------


def test_an_unreachable_server(cli: Cli) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    outcome = cli("status", str(uuid4()), GENAI_JOBS_URL=url)
    assert_one_line_error(outcome, f"cannot reach the server at {url}")


def test_a_bad_token(cli: Cli) -> None:
    outcome = cli("list", GENAI_JOBS_TOKEN="wrong")
    assert_one_line_error(outcome, "rejected the token (401)")


def test_no_token(cli: Cli) -> None:
    outcome = cli("list", GENAI_JOBS_TOKEN="")
    assert_one_line_error(outcome, "no token")


def test_an_unknown_id(cli: Cli) -> None:
    unknown = str(uuid4())
    for command in ("status", "wait", "cancel"):
        assert_one_line_error(cli(command, unknown), f"job {unknown} not found")


def test_an_id_that_is_not_a_uuid(cli: Cli) -> None:
    assert_one_line_error(cli("status", "1234"), "'1234' is not a job id")
    assert_one_line_error(cli("cancel", "12/34"), "'12/34' is not a job id")


def test_invalid_json_says_where(cli: Cli) -> None:
    outcome = cli("submit", SLEEP, "--payload", '{"seconds": }')
    assert_one_line_error(outcome, "invalid JSON in --payload at line 1, column 13")


def test_a_payload_the_server_rejects(cli: Cli) -> None:
    outcome = cli("submit", SLEEP, "--payload", '{"seconds": -1}')
    assert_one_line_error(outcome, "invalid request: body.payload.seconds: ")


def test_a_payload_file(cli: Cli, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"seconds": 0}')
    outcome = cli("submit", SLEEP, "--payload-file", str(payload), "--wait", "--timeout", "30")
    assert outcome.code == 0, outcome.err
    payload.write_text("[1, 2")
    assert_one_line_error(cli("submit", SLEEP, "--payload-file", str(payload)), "invalid JSON")


# -- job types and results ----------------------------------------------------------


def test_job_types_shows_a_table_and_the_servers_json(server: Any, cli: Cli) -> None:
    table = cli("job-types")
    assert table.code == 0, table.err
    assert table.err == ""
    rows = {line.split("│")[1].strip(): line for line in table.lines if line.startswith("│")}
    assert {SLEEP, "test.slow_attempt", "vectorDatabase.build"} <= set(rows)
    assert "0.5 s" in rows["test.slow_attempt"]  # its attempt time-out
    assert f"{len(rows)} job types" in table.out

    raw = cli("job-types", "--json")
    assert raw.code == 0, raw.err
    with server.client(cli.token) as http:
        assert json.loads(raw.out) == http.get("/api/v2/genai/jobTypes/").json()


def test_result_prints_a_completed_jobs_result_as_json(cli: Cli) -> None:
    status_id = cli.submit({"seconds": 0})
    assert cli("wait", status_id, "--timeout", "30").code == 0
    outcome = cli("result", status_id)
    assert (outcome.code, outcome.err) == (0, "")
    assert json.loads(outcome.out) == {"slept": 0.0}


def test_result_says_where_a_result_location_is(cli: Cli) -> None:
    status_id = cli("submit", "test.location", "--wait", "--timeout", "30").lines[0]
    outcome = cli("result", status_id)
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out) == {"rows": 42}
    assert outcome.err == "result location: https://example.invalid/results/42\n"


@pytest.mark.parametrize(("payload", "args", "state"), [
    ({"seconds": 0, "outcome": "error"}, ("--max-attempts", "1"), "ERROR"),
    ({"seconds": 30}, ("--expires-in", "1"), "EXPIRED"),
])
def test_result_of_a_failed_job_is_why_whole_and_exit_1(
        server: Any, cli: Cli, payload: dict[str, Any], args: tuple[str, ...], state: str) -> None:
    status_id = cli.submit(payload, *args)
    assert cli("wait", status_id, "--timeout", "30").code == 1
    outcome = cli("result", status_id)
    assert outcome.code == 1
    assert outcome.err == ""
    with server.client(cli.token) as http:
        job = http.get(f"/api/v2/genai/jobs/{status_id}/").json()
    fields = dict(line.split(":", 1) for line in outcome.lines)
    assert {name: value.strip() for name, value in fields.items()} == {
        "statusId": status_id, "status": state, "statusType": SLEEP,
        "attempts": str(job["attempts"]), "maxAttempts": str(job["maxAttempts"]),
        "finishedAt": job["finishedAt"], "message": job["message"]}
    assert job["message"]


def test_result_of_an_aborted_job_exits_1_and_of_a_running_one_2(cli: Cli) -> None:
    status_id = cli.submit({"seconds": 60})
    running = cli("result", status_id)
    assert running.code == 2
    assert running.lines[0].startswith(status_id)
    assert_one_line_error(running, f"job {status_id} is ", "it has no result yet",
                          f"genai-jobs wait {status_id}")

    assert cli("cancel", status_id).code == 0
    assert cli("wait", status_id, "--timeout", "30").code == 1
    aborted = cli("result", status_id)
    assert aborted.code == 1
    assert "status:      ABORTED" in aborted.out
    assert "aborted by token" in aborted.out


def test_result_of_an_unknown_or_bad_id(cli: Cli) -> None:
    unknown = str(uuid4())
    assert_one_line_error(cli("result", unknown), f"job {unknown} not found")
    assert_one_line_error(cli("result", "1234"), "'1234' is not a job id")
