"""Real processes for tests: the service, workers and the CLI, on loopback only."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parent.parent
CLI = shutil.which("genai-jobs", path=str(Path(sys.executable).parent)) or "genai-jobs"
SAMPLE_APP = "tests.apps.sample:registry"
# Short leases and back-offs so that recovery tests finish in seconds.
FAST_SETTINGS = {
    "GENAI_JOBS_LEASE_SECONDS": "3",
    "GENAI_JOBS_RETRY_BASE_SECONDS": "0.2",
    "GENAI_JOBS_RETRY_MAX_SECONDS": "1",
    "GENAI_JOBS_MAINTENANCE_INTERVAL_SECONDS": "0.2",
    "GENAI_JOBS_IDLE_POLL_SECONDS": "0.5",
    "GENAI_JOBS_DEADLINE_GRACE_SECONDS": "3",
    "GENAI_JOBS_SHUTDOWN_GRACE_SECONDS": "5",
}
STARTUP_SECONDS = 20.0

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GENAI_JOBS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(FAST_SETTINGS)
    env.update(extra or {})
    return env


def poll_until(check: Callable[[], T | None], timeout: float, interval: float = 0.05,
               what: str = "condition") -> T:
    """Call `check` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CLI, *args], env=process_env(env), capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"genai-jobs {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def create_token(database_url: str, tenant: str, admin: bool = False) -> str:
    args = ["token", "create", "--tenant", tenant, "--database-url", database_url]
    result = run_cli(*args, *(["--admin"] if admin else []))
    return result.stdout.strip().splitlines()[-1]


@dataclass
class ServiceProcess:
    """`genai-jobs serve` or `genai-jobs worker` as a child process."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen([CLI, *self.args], env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=REPO)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float = STARTUP_SECONDS) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.args[0]} exited early:\n{self.output()}")
            return re.search(pattern, self.output(), re.MULTILINE)

        return poll_until(found, timeout, what=f"{pattern!r} in the output")

    def freeze_between_writes(self, database_url: str, tries: int = 200) -> None:
        """SIGSTOP the process at a moment it holds no SQLite write lock. A process paused
        inside a write transaction stalls every writer of the file until it resumes (SQLite
        has one writer at a time), which is not the pause under test: a lease that lapses
        while everyone else can still write."""
        path = database_url.removeprefix("sqlite:///")
        for _ in range(tries):
            os.kill(self.pid, signal.SIGSTOP)
            if _can_take_write_lock(path):
                return
            os.kill(self.pid, signal.SIGCONT)
            time.sleep(0.01)
        raise AssertionError(f"{self.args[0]} held the write lock at each of {tries} tries")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()


@dataclass
class Server:
    """A running `genai-jobs serve` on a loopback port."""

    url: str
    database_url: str
    admin_token: str
    service: ServiceProcess
    tmp: Path

    def make_token(self, tenant: str, admin: bool = False) -> str:
        return create_token(self.database_url, tenant, admin)

    def client(self, token: str | None = None, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def start_worker(self, *extra: str, env: Mapping[str, str] | None = None,
                     name: str = "worker") -> ServiceProcess:
        worker = ServiceProcess(
            ["worker", "--database-url", self.database_url, "--app", SAMPLE_APP, *extra],
            process_env(env), self.tmp / f"{name}-{time.monotonic_ns()}.log",
        ).start()
        try:
            worker.wait_for_output(r"genai-jobs worker")
        except BaseException:
            worker.close()
            raise
        return worker


def _can_take_write_lock(path: str) -> bool:
    with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        conn.execute("ROLLBACK")
        return True


def start_server(tmp: Path, *extra: str, env: Mapping[str, str] | None = None,
                 admin_token: str | None = None, database_url: str | None = None) -> Server:
    """Start `serve` on a free port (on `tmp`/jobs.db unless given another store); pass
    `admin_token` when the store already has tokens (it is only printed for an empty one)."""
    port = free_port()
    database_url = database_url or f"sqlite:///{tmp / 'jobs.db'}"
    service = ServiceProcess(
        ["serve", "--port", str(port), "--database-url", database_url, "--app", SAMPLE_APP,
         *extra],
        process_env(env), tmp / f"serve-{port}.log",
    ).start()
    try:
        service.wait_for_output(r"genai-jobs serving on")
        token = admin_token or service.wait_for_output(r"^(gj_\S+)$").group(1)
        url = f"http://127.0.0.1:{port}"
        poll_until(lambda: _healthy(url), STARTUP_SECONDS, what="the server's /healthz")
    except BaseException:
        service.close()
        raise
    return Server(url, database_url, token, service, tmp)


@contextmanager
def running_server(tmp: Path, *extra: str, env: Mapping[str, str] | None = None,
                   database_url: str | None = None) -> Iterator[Server]:
    """`start_server` for the block's length: stopped with SIGTERM, then closed."""
    running = start_server(tmp, *extra, env=env, database_url=database_url)
    try:
        yield running
    finally:
        running.service.terminate()
        running.service.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def submit(client: httpx.Client, job_type: str, payload: dict[str, Any] | None = None,
           **fields: Any) -> str:
    response = client.post("/api/v2/genai/jobs/",
                           json={"jobType": job_type, "payload": payload or {}, **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["statusId"])


def wait_for_status(client: httpx.Client, job_id: str, states: set[str] | str,
                    timeout: float = 20) -> dict[str, Any]:
    wanted = {states} if isinstance(states, str) else states

    def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/v2/genai/jobs/{job_id}/",
                                          params={"waitSeconds": 1}).json()
        return body if body["status"] in wanted else None

    return poll_until(reached, timeout, interval=0, what=f"job {job_id} in {wanted}")
