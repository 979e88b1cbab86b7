"""The wait for the embedding model is said, and can be spent at start instead: the first
build's progress while the model loads, what `vdb create --wait` shows on a terminal and
`vdb search` says while the server loads it, and GENAI_JOBS_PRELOAD_EMBEDDINGS in `serve`
and `worker`. Real processes, the real model; each test needs processes that have not
loaded it yet."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import CLI, Server, ServiceProcess, process_env, run_cli, running_server
from tests.vectors_support import (
    SOLAR,
    create_dataset,
    create_vdb,
    follow_build,
)

pytestmark = pytest.mark.slow

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The first build's progress while the model loads, said again every second.
LOADING = re.compile(rf"loading the embedding model {re.escape(MODEL)} \((\d+) s so far; once "
                     r"per worker process, up to a minute\)")
SEARCH_NOTICE = ("searching: the first search after the server starts waits for it to load "
                 "the embedding model (up to a minute)")
PRELOAD = {"GENAI_JOBS_PRELOAD_EMBEDDINGS": "true"}


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[Server]:
    """`serve` without workers: builds run in `worker` processes of the test's own, so
    that the API process loads the model only for a search."""
    with running_server(tmp_path, "--workers", "0") as running:
        yield running


@pytest.fixture
def worker(api_only: Server) -> Iterator[ServiceProcess]:
    process = api_only.start_worker()
    try:
        yield process
    finally:
        process.terminate()
        process.close()


def env_of(server: Server, client: httpx.Client) -> dict[str, str]:
    return {"GENAI_JOBS_URL": server.url,
            "GENAI_JOBS_TOKEN": client.headers["authorization"].split()[1]}


def in_a_terminal(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run the command line with its stderr on a terminal (a pseudo-terminal 300 columns
    wide) and its stdout on a pipe: (exit code, stdout, what the terminal showed)."""
    parent, child = pty.openpty()
    process = subprocess.Popen([CLI, *args], env=process_env({**env, "COLUMNS": "300",
                                                              "TERM": "xterm"}),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child)
    os.close(child)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:  # bounded: until the terminal closes, or the time
            ready, _, _ = select.select([parent], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                block = os.read(parent, 65536)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not block:
                break
            shown += block
        stdout, _ = process.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(parent)
    return process.returncode, stdout.decode(), shown.decode(errors="replace")


# -- without preloading: said while it loads -----------------------------------------


def test_the_first_build_of_a_worker_says_it_is_loading_the_model_and_later_ones_do_not(
        api_only: Server, worker: ServiceProcess) -> None:
    with api_only.client(api_only.make_token("first"), timeout=120) as client:
        dataset_id = create_dataset(client, [("solar.txt", SOLAR.encode())])
        first = create_vdb(client, dataset_id, 32)
        seen = follow_build(client, first["buildStatusId"], timeout=150)
        assert seen[-1]["status"] == "COMPLETED", seen[-1]
        loading = [job for job in seen if LOADING.fullmatch(job["progressMessage"])]
        assert loading, [job["progressMessage"] for job in seen]
        assert all((job["status"], job["progress"]) == ("RUNNING", 0.0) for job in loading)
        # Said again as the seconds pass: a watcher's long-poll is woken each time.
        seconds = [int(LOADING.fullmatch(job["progressMessage"])[1])  # type: ignore[index]
                   for job in loading]
        assert seconds == sorted(seconds)
        again = create_vdb(client, dataset_id, 32)
        seen = follow_build(client, again["buildStatusId"], timeout=60)
        assert seen[-1]["status"] == "COMPLETED", seen[-1]
        assert not [job for job in seen if "loading" in job["progressMessage"]]
    assert f"embedding model {MODEL} loaded in" in worker.output()


def test_vdb_create_wait_shows_the_model_loading_on_a_terminal(
        api_only: Server, worker: ServiceProcess) -> None:
    with api_only.client(api_only.make_token("terminal"), timeout=120) as client:
        dataset_id = create_dataset(client, [("solar.txt", SOLAR.encode())])
        code, stdout, shown = in_a_terminal(
            ["vdb", "create", "--dataset", dataset_id, "--wait", "--timeout", "150"],
            env_of(api_only, client), timeout=170)
    assert code == 0, shown
    assert stdout.splitlines()[1].endswith(" COMPLETED")
    # The live bar (a spinner, the job's state and message, the time spent) while it loads.
    assert re.search(rf"RUNNING {LOADING.pattern}", shown), shown


def test_vdb_search_says_what_it_waits_for_while_the_server_loads_the_model(
        api_only: Server, worker: ServiceProcess) -> None:
    with api_only.client(api_only.make_token("searcher"), timeout=120) as client:
        dataset_id = create_dataset(client, [("solar.txt", SOLAR.encode())])
        vdb = create_vdb(client, dataset_id, 32)
        assert follow_build(client, vdb["buildStatusId"], timeout=150)[-1]["status"] == (
            "COMPLETED")
        env = env_of(api_only, client)
    # The worker loaded the model; the API process, which answers searches, has not.
    found = run_cli("vdb", "search", vdb["id"], "Which planet is the largest?", "-k", "1",
                    env=env, timeout=150)
    assert found.stderr.splitlines() == [SEARCH_NOTICE]
    assert "  solar.txt#" in found.stdout
    assert "Jupiter" in found.stdout


# -- preloading at start ------------------------------------------------------------------


def test_serve_preloads_the_model_and_its_first_build_and_search_do_not_wait(
        tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "1", env=PRELOAD) as server:
        server.service.wait_for_output(f"embedding model {MODEL} loaded in", timeout=150)
        with server.client(server.make_token("preloaded"), timeout=120) as client:
            dataset_id = create_dataset(client, [("solar.txt", SOLAR.encode())])
            vdb = create_vdb(client, dataset_id, 32)
            seen = follow_build(client, vdb["buildStatusId"], timeout=60)
            assert seen[-1]["status"] == "COMPLETED", seen[-1]
            assert not [job for job in seen if "loading" in job["progressMessage"]]
            found = run_cli("vdb", "search", vdb["id"], "the largest planet", "-k", "1",
                            env=env_of(server, client))
        assert found.stderr == ""
        assert "Jupiter" in found.stdout
        output = server.service.output()
    assert output.count(f"embedding model {MODEL} loaded in") == 1  # at start, once


def test_a_worker_preloads_the_model_and_a_stop_does_not_wait_for_it(
        api_only: Server) -> None:
    worker = api_only.start_worker(env=PRELOAD)
    try:
        worker.wait_for_output(r"preloading the embedding model .* in the background")
        started = time.monotonic()
        code = worker.terminate()  # while the model loads: the load is no reason to stay
        stopped_in = time.monotonic() - started
    finally:
        worker.close()
    assert code == 0, worker.output()
    # It stopped before the model was loaded, did not wait for it, and cleanly.
    assert f"embedding model {MODEL} loaded in" not in worker.output()
    assert "Traceback" not in worker.output()
    assert "Fatal Python error" not in worker.output()
    assert stopped_in < 5, worker.output()
    again = api_only.start_worker(env=PRELOAD)
    try:
        again.wait_for_output(f"embedding model {MODEL} loaded in", timeout=150)
    finally:
        again.terminate()
        again.close()
