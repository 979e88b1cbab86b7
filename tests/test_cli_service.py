"""The commands that run the service and manage tokens, as a user types them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import ServiceProcess, process_env, run_cli


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--database-url",
                         f"sqlite:///{tmp_path / 'jobs.db'}", check=False, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_bad_app_is_one_line(tmp_path: Path) -> None:
    result = run_cli("worker", "--app", "no_such_module:registry", "--database-url",
                     f"sqlite:///{tmp_path / 'jobs.db'}", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: cannot import 'no_such_module' for --app "
                                     "no_such_module:registry: No module named 'no_such_module'")


def test_apps_and_token_options_read_their_environment_variables(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    run_cli("migrate", env={"GENAI_JOBS_DATABASE_URL": database})
    created = run_cli("token", "create", env={"GENAI_JOBS_DATABASE_URL": database,
                                              "GENAI_JOBS_TENANT": "from-env",
                                              "GENAI_JOBS_ADMIN": "1"})
    assert "admin token" in created.stdout
    assert "'from-env'" in created.stdout
    worker = ServiceProcess(["worker"], process_env({
        "GENAI_JOBS_DATABASE_URL": database,
        "GENAI_JOBS_APP": "tests.apps.sample:registry",
    }), tmp_path / "worker.log").start()
    try:
        worker.wait_for_output(r"job types .*test\.count")
    finally:
        worker.close()


def test_token_list_shows_whole_ids_when_piped(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    run_cli("migrate", "--database-url", database)
    created = run_cli("token", "create", "--tenant", "team-with-a-long-name",
                      "--database-url", database)
    token_id = created.stdout.split("token ", 1)[1].split()[0]
    listed = run_cli("token", "list", "--database-url", database)
    assert token_id in listed.stdout
    revoked = run_cli("token", "revoke", token_id, "--database-url", database)
    assert revoked.stdout.startswith(f"revoked token {token_id}")


@pytest.mark.parametrize("tenant", ["a\nfake row", "esc\x1b[31m", "tab\there", "c\rr",
                                    "zero\u200bwidth", "   ", "x" * 101])
def test_a_tenant_name_that_could_forge_lines_is_refused(tmp_path: Path, tenant: str) -> None:
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    refused = run_cli("token", "create", "--tenant", tenant, "--database-url", database,
                      check=False)
    assert refused.returncode != 0
    assert "--tenant:" in refused.stderr
    assert "gj_" not in refused.stdout


def test_migrate_reports_what_it_did(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = run_cli("migrate", "--database-url", database)
    assert first.stdout.startswith("applied migrations [1, 2")
    assert run_cli("migrate", "--database-url", database).stdout.strip() == \
        "the store is up to date"
