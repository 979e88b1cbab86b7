"""Does a server run inside our own loop with real in-process workers, and stop in our order?

    .venv/bin/python bench/inloop_check.py

For each in-loop setup of bench/inloop.py (uvicorn.Server on asyncio, on
uvloop; granian's embed.Server on uvloop), with one in-process worker and a
fresh store:

1. a `diagnostics.sleep` job of 0.5 s, submitted over HTTP, must reach
   COMPLETED (the worker ran it in the server's loop);
2. a second one of 60 s is submitted and, once RUNNING, the process gets
   SIGTERM: it must exit 0 within a few seconds (shutdown grace set to 1 s),
   having logged our own "received SIGTERM" (not the server's handler), and
   the job must be back to INITIALIZED (released for another worker).

Bounded: every wait has a deadline; loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from genai_jobs.store import create_store
from genai_jobs.tokens import hash_secret, new_secret

REPO = Path(__file__).resolve().parent.parent
SETUPS = (("uvicorn", "asyncio"), ("uvicorn", "uvloop"), ("granian", "uvloop"))
DEADLINE_SECONDS = 20.0


async def make_store(url: str) -> str:
    store = create_store(url)
    await store.open()
    try:
        await store.migrate()
        secret = new_secret()
        await store.create_token("admin", True, hash_secret(secret))
        return secret
    finally:
        await store.close()


def request(method: str, url: str, token: str, body: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def check(server: str, loop: str, folder: Path) -> str:
    url = f"sqlite:///{folder / f'{server}-{loop}.db'}"
    token = asyncio.run(make_store(url))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/api/v2/genai"
    env = os.environ | {"GENAI_JOBS_DATABASE_URL": url, "GENAI_JOBS_WORKERS": "1",
                        "GENAI_JOBS_SHUTDOWN_GRACE_SECONDS": "1", "BENCH_FLOOR_JSON": "{}",
                        "PYTHONPATH": str(REPO)}
    log = folder / f"{server}-{loop}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.inloop", "--server", server, "--loop", loop,
             "--port", str(port)], cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_for(lambda: request("GET", f"{base}/jobs/", token) is not None, "the server")
        short = request("POST", f"{base}/jobs/", token,
                        {"jobType": "diagnostics.sleep", "payload": {"seconds": 0.5}})
        wait_for(lambda: request("GET", f"{base}/status/{short['statusId']}/", token)["status"]
                 == "COMPLETED", "the short job to complete")
        long = request("POST", f"{base}/jobs/", token,
                       {"jobType": "diagnostics.sleep", "payload": {"seconds": 60}})
        status_url = f"{base}/status/{long['statusId']}/"
        wait_for(lambda: request("GET", status_url, token)["status"] == "RUNNING",
                 "the long job to run")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=DEADLINE_SECONDS)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text(errors="replace")
    ours = "received SIGTERM: stopping" in text
    after = asyncio.run(job_status(url, long["statusId"]))
    ok = code == 0 and ours and after == "INITIALIZED"
    return (f"{server:8} {loop:8} short job COMPLETED; SIGTERM while running -> exit {code} "
            f"in {took:.2f} s, our handler ran: {ours}, long job now {after}: "
            f"{'OK' if ok else 'FAILED'}\n" + ("" if ok else text[-3000:]))


async def job_status(url: str, job_id: str) -> str:
    from uuid import UUID

    store = create_store(url)
    await store.open()
    try:
        job = await store.get(UUID(job_id))
        return str(job.status.value)
    finally:
        await store.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="genai-jobs-inloop-check-") as name:
        for server, loop in SETUPS:
            print(check(server, loop, Path(name)), flush=True)


if __name__ == "__main__":
    main()
