"""A new user's first hour (issue 10), tried as they would try it: real processes only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO, STARTUP_SECONDS, free_port, poll_until, process_env

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
