"""What every benchmark section shares: scratch stores, service processes, wrk, statistics.

Everything here runs on 127.0.0.1 and every wait is bounded. Sections use:

- `scratch_store(kind, folder)`: a new SQLite file or a new PostgreSQL database
  (created on `BENCH_PG_ADMIN_URL`, default postgres@127.0.0.1:5432, and dropped
  afterwards), migrated, with an admin token and a token for tenant `bulk`;
- `Service`: `genai-jobs serve|worker` (or any command) as a child process in a
  session of its own, with its log in a file; stopped with SIGTERM;
- `run_wrk`: wrk with bench/wrk_report.lua, its report as a dict;
- `spread` (median, min, max over rounds) and `percentiles` (p50/p90/p99).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from genai_jobs.domain import NewJob
from genai_jobs.store import Store, create_store, sqlite_path
from genai_jobs.tokens import hash_secret, new_secret

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent
CLI = str(BIN / "genai-jobs")
HOST = "127.0.0.1"
WRK_REPORT = BENCH / "wrk_report.lua"
NOOP_APP = "bench.noop_app:registry"
NOOP_TYPE = "bench.noop"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgres")
READY_SECONDS = 30.0
STOP_SECONDS = 30.0

T = TypeVar("T")


# -- the run --------------------------------------------------------------------

@dataclass
class Run:
    """What a section needs to know about the run it is part of."""

    folder: Path
    quick: bool = False
    smoke: bool = False
    rounds: int = 3
    backends: Sequence[str] = BACKENDS
    peers: bool = True
    deadline: float = float("inf")  # time.monotonic() past which no new unit starts
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def size(self, full: T, quick: T, smoke: T | None = None) -> T:
        """The figure for this kind of run."""
        if self.smoke and smoke is not None:
            return smoke
        return quick if self.quick or self.smoke else full

    def out_of_time(self, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return False
        self.log(f"  time budget spent: skipping {what}")
        return True


Outcome = dict[str, Any]


def rotating_rounds(ctx: Run, what: str, setups: Sequence[str],
                    ours: Callable[[str], Outcome], peer: Callable[[str], Outcome],
                    summary: Callable[[Outcome], str]) -> list[Outcome]:
    """Run every setup once a round, each round starting one setup later, so that
    no setup always runs first (or last) on a machine whose load drifts.

    `ours(key)` runs a setup "ours-...", `peer(name)` a setup "peer-NAME";
    `summary(outcome)` may add summary fields to a good outcome and returns its log
    line. A setup that fails is recorded as {"failed": ...} and the others still run.
    """
    samples: list[Outcome] = []
    for round_no in range(ctx.rounds):
        shift = round_no % len(setups)
        for key in [*setups[shift:], *setups[:shift]]:
            if ctx.out_of_time(f"{what} {key} round {round_no}"):
                break
            if key.startswith("ours-"):
                try:
                    outcome = ours(key)
                except Exception as exc:  # recorded, and the other setups still run
                    outcome = {"failed": f"{type(exc).__name__}: {exc}"}
            else:
                outcome = peer(key.removeprefix("peer-"))
            outcome.update(setup=key, round=round_no)
            line = f"FAILED: {outcome['failed']}" if "failed" in outcome else summary(outcome)
            ctx.log(f"  round {round_no} {key:26} {line}")
            samples.append(outcome)
    return samples


# -- statistics -----------------------------------------------------------------

def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), linear between the nearest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    return {"p50": quantile(values, 0.50), "p90": quantile(values, 0.90),
            "p99": quantile(values, 0.99), "n": len(values)}


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median, min and max over rounds (NaN-free; empty gives NaNs)."""
    kept = [v for v in values if v == v]
    if not kept:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept),
            "n": len(kept)}


# -- stores ---------------------------------------------------------------------

@dataclass(frozen=True)
class Scratch:
    kind: str
    url: str
    admin_token: str
    tenant_token: str  # tenant "bulk"


def _pg_url(dbname: str) -> str:
    head, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{head}/{dbname}"


def postgres_reachable() -> str | None:
    """None if PostgreSQL answers at BENCH_PG_ADMIN_URL, else why not."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


@contextlib.contextmanager
def scratch_store(kind: str, folder: Path) -> Iterator[Scratch]:
    """A fresh, migrated store with two tokens; removed (dropped) afterwards."""
    name = f"gj_bench_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        url = f"sqlite:///{folder / (name + '.db')}"
    elif kind == "postgres":
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = _pg_url(name)
    else:
        raise ValueError(f"unknown backend {kind!r}")
    try:
        admin, tenant = asyncio.run(_prepare(url))
        yield Scratch(kind, url, admin, tenant)
    finally:
        if kind == "postgres":
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                             .format(sql.Identifier(name)))
        else:
            path = sqlite_path(url)
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)


async def _prepare(url: str) -> tuple[str, str]:
    async with opened(url) as store:
        await store.migrate()
        admin, tenant = new_secret(), new_secret()
        await store.create_token("admin", True, hash_secret(admin))
        await store.create_token("bulk", False, hash_secret(tenant))
    return admin, tenant


@contextlib.asynccontextmanager
async def opened(url: str, pool_size: int = 10) -> Any:
    store: Store = create_store(url, pool_size=pool_size)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def noop_job(tenant: str = "admin", job_type: str = NOOP_TYPE,
             payload: dict[str, Any] | None = None) -> NewJob:
    """A submission as the API would store it (a day to live, 3 attempts)."""
    return NewJob(tenant=tenant, job_type=job_type, payload=payload or {}, description="bench",
                  expires_at=datetime.now(UTC) + timedelta(days=1), max_attempts=3, priority=0)


def scalar(url: str, query_sqlite: str, query_postgres: str) -> Any:
    """One value from a read on either store, outside the store API."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(sqlite_path(url), timeout=10)
        try:
            return conn.execute(query_sqlite).fetchone()[0]
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        row = pg.execute(query_postgres.encode()).fetchone()
        return None if row is None else row[0]


def server_version_postgres() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return None if row is None else str(row[0])
    except psycopg.Error:
        return None


# -- processes ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def service_env(database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_JOBS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["GENAI_JOBS_DATABASE_URL"] = database_url
    env["GENAI_JOBS_LOG_LEVEL"] = "warning"
    env.update(extra or {})
    return env


class Service:
    """A child process in its own session (so nothing it starts outlives it)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log: Path,
                 port: int | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        self.port = port
        with log.open("ab") as output:
            self.process = subprocess.Popen(self.argv, cwd=REPO, env=dict(env), stdout=output,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    @classmethod
    def genai_jobs(cls, command: str, database_url: str, folder: Path, *args: str,
                   env: Mapping[str, str] | None = None, wait: bool = True) -> Service:
        """`genai-jobs serve` (on a free port) or `genai-jobs worker`; ready unless `wait`
        is False (then call `ready()`: several processes can start side by side)."""
        port = free_port() if command == "serve" else None
        argv = [CLI, command, *args]
        if port is not None:
            argv += ["--port", str(port)]
        log = folder / f"{command}-{uuid.uuid4().hex[:6]}.log"
        service = cls(argv, service_env(database_url, env), log, port)
        if wait:
            service.ready()
        return service

    def ready(self) -> None:
        """Wait until a server answers /healthz, or a worker has announced itself."""
        if self.port is not None:
            self.wait_http("/healthz")
        else:
            self.wait_output(r"genai-jobs worker ")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.output().splitlines()[-20:])
            raise RuntimeError(f"{' '.join(self.argv[:3])} exited with "
                               f"{self.process.returncode}:\n{tail}")

    def wait_http(self, path: str, timeout: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                if http_get(self.base + path)[0] < 500:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.argv[:3]} not answering {path} in {timeout:g} s")

    def wait_output(self, pattern: str, timeout: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if re.search(pattern, self.output()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.argv[:3]}: no {pattern!r} in {timeout:g} s")

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL the session only if it will not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # anything left in its session
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def services(*started: Callable[[], Service]) -> Iterator[list[Service]]:
    """Start them all, then wait until each is ready; stop all that started, whatever
    happens. (Starters that pass `wait=False` start side by side.)"""
    running: list[Service] = []
    try:
        for start in started:
            running.append(start())
        for service in running:
            service.ready()
        yield running
    finally:
        for service in reversed(running):
            service.stop()


def http_get(url: str, token: str | None = None,
             timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


# -- /proc ----------------------------------------------------------------------

def rss_mib(pid: int) -> float:
    """Resident memory (VmRSS) of one process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mib(pid: int) -> float:
    """Proportional set size: RSS with shared pages split among their users, MiB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_share(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds` (noise indicator)."""
    def busy() -> tuple[float, float]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        return sum(values) - values[3] - values[4], sum(values)

    b0, t0 = busy()
    time.sleep(seconds)
    b1, t1 = busy()
    return (b1 - b0) / max(t1 - t0, 1)


# -- wrk ------------------------------------------------------------------------

def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, token: str | None, seconds: float, connections: int = 64,
            threads: int = 2, script: Path | None = None) -> dict[str, Any]:
    """One wrk run; its report (bench/wrk_report.lua) plus requests/s and error count."""
    threads = min(threads, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "5s", "-s", str(script or WRK_REPORT)]
    if token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60,
                          check=True)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            report: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            report["rps"] = report["requests"] / (report["duration_us"] / 1e6)
            report["errors"] = sum(int(report[k]) for k in (
                "connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
            return report
    raise RuntimeError(f"no report from wrk:\n{done.stdout}\n{done.stderr}")


def wrk_paths_script(folder: Path, paths: Sequence[str]) -> Path:
    """A wrk script that asks for a random one of `paths` each request (and reports)."""
    listing = ",\n".join(json.dumps(p) for p in paths)
    script = folder / f"paths-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(
        f"local paths = {{\n{listing}\n}}\n"
        "math.randomseed(12345)\n"
        "request = function()\n"
        "  return wrk.format(nil, paths[math.random(#paths)])\n"
        "end\n" + WRK_REPORT.read_text())
    return script


# -- versions -------------------------------------------------------------------

PACKAGES = ("genai-jobs", "fastapi", "starlette", "uvicorn", "httptools", "pydantic",
            "pydantic-core", "orjson", "httpx", "psycopg", "psycopg-binary", "psycopg-pool",
            "matplotlib")


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    wrk = "not installed"
    if wrk_available():
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        wrk = ((done.stdout or done.stderr).splitlines() or ["?"])[0].strip()
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_modified": bool(_git("status", "--porcelain", "--", "src")),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "sqlite": sqlite3.sqlite_version,
        "postgres": server_version_postgres(),
        "wrk": wrk,
        "packages": versions,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _git(*args: str) -> str:
    """Read-only git queries for the report (never changes the index)."""
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=False)
    except OSError:
        return ""
    return done.stdout.strip()
