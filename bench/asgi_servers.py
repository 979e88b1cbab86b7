"""Which ASGI server should `genai-jobs serve` use? Measure the status route on each.

    .venv/bin/python bench/asgi_servers.py [--duration S] [--rounds N] [--out DIR]

What it does:

1. Makes a fresh SQLite store in a temporary folder with the project's own
   code: migrations, one admin token, one real job (queued, so the route
   answers 200 with `Retry-After`). It asks the app in-process (httpx's ASGI
   transport) for the job's status once: that body is what every server must
   answer, and what the floor route (bench/asgi_app.py) returns.
2. For each round, for each server setup (in an order rotated every round, as
   the machine is shared and noisy): starts the server on 127.0.0.1, checks
   its answers (200 + the expected body + `Retry-After`; 401 without a token),
   then for each route (status, then floor; reversed on odd rounds) runs
   `wrk` with 64 connections and 2 threads, 1 s of warm-up, then `--duration`
   seconds measured, and reads the server's own CPU time (its process tree,
   from /proc) before and after. Then stops it with SIGTERM and notes the exit
   code and how long it took.
3. Prints, per setup and route: median requests/s and min-max over rounds,
   ratio to the best median, median p50/p99 latency, and the server's CPU
   time per request (less sensitive to the load generator sharing the cores).

Every load loop is bounded: `--rounds` rounds, `wrk -d` seconds each (with a
subprocess timeout), and `--max-minutes` for the whole run. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from genai_jobs.api import create_app
from genai_jobs.domain import NewJob
from genai_jobs.handlers import load_registry
from genai_jobs.settings import Settings
from genai_jobs.store import create_store
from genai_jobs.tokens import hash_secret, new_secret

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WRK_SCRIPT = REPO / "bench" / "wrk_report.lua"
APP_FACTORY = "bench.asgi_app:create_app"
FLOOR_PATH = "/bench/floor"  # bench/asgi_app.py FLOOR_PATH
FLOOR_BODY_ENV = "BENCH_FLOOR_JSON"  # bench/asgi_app.py FLOOR_BODY_ENV
ASYNC_SERVICES_ENV = "BENCH_ASYNC_SERVICES"  # bench/asgi_app.py ASYNC_SERVICES_ENV
HOST = "127.0.0.1"

CONNECTIONS = 64
WRK_THREADS = 2
WARMUP_SECONDS = 1
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
ROUTES = ("status", "floor")

VERSIONED = ("uvicorn", "granian", "uvloop", "httptools", "h11", "fastapi", "starlette",
             "pydantic", "pydantic-core", "orjson", "genai-jobs")


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    argv: Callable[[int], list[str]]  # port -> command line


def _uvicorn(loop: str, http: str) -> Callable[[int], list[str]]:
    return lambda port: [str(BIN / "uvicorn"), "--factory", APP_FACTORY, "--host", HOST,
                         "--port", str(port), "--loop", loop, "--http", http,
                         "--lifespan", "on", "--no-proxy-headers", "--log-level", "warning"]


def _granian(*extra: str) -> Callable[[int], list[str]]:
    return lambda port: [str(BIN / "granian"), "--interface", "asgi", "--workers", "1",
                         "--factory", "--host", HOST, "--port", str(port),
                         "--log-level", "warning", *extra, APP_FACTORY]


def _inloop(server: str, loop: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, "-m", "bench.inloop", "--server", server,
                         "--loop", loop, "--port", str(port)]


SETUPS: tuple[Setup, ...] = (
    Setup("uvicorn-uvloop-httptools", "uvicorn CLI, --loop uvloop --http httptools",
          _uvicorn("uvloop", "httptools")),
    Setup("uvicorn-asyncio-h11", "uvicorn CLI, --loop asyncio --http h11",
          _uvicorn("asyncio", "h11")),
    Setup("granian", "granian CLI, --interface asgi, defaults (--loop auto)", _granian()),
    Setup("granian-asyncio", "granian CLI, --interface asgi --loop asyncio",
          _granian("--loop", "asyncio")),
    Setup("inloop-uvicorn-asyncio", "in-loop uvicorn.Server, asyncio loop, http auto "
          "(= today's serve)", _inloop("uvicorn", "asyncio")),
    Setup("inloop-uvicorn-uvloop", "in-loop uvicorn.Server, uvloop loop, http auto",
          _inloop("uvicorn", "uvloop")),
    Setup("inloop-granian-uvloop", "in-loop granian embed.Server (experimental), uvloop",
          _inloop("granian", "uvloop")),
)


@dataclass(frozen=True)
class Fixture:
    database_url: str
    token: str
    job_id: UUID
    status_body: dict[str, Any]

    def path(self, route: str) -> str:
        return f"/api/v2/genai/status/{self.job_id}/" if route == "status" else FLOOR_PATH


@dataclass
class Sample:
    setup: str
    route: str
    round: int
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_us_per_request: float
    # CPU the rest of the machine used meanwhile (not this server, not wrk), as
    # a share of all cores: how noisy this sample was.
    others_cpu_share: float
    requests: int
    errors: int


@dataclass
class Launch:
    setup: str
    round: int
    loop: str
    ready_seconds: float
    exit_code: int | None
    stop_seconds: float
    killed: bool


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    launches: list[Launch] = field(default_factory=list)


# -- the store ----------------------------------------------------------------

async def make_fixture(folder: Path) -> Fixture:
    """A migrated store with one admin token and one queued job, and the job's status body."""
    settings = Settings(database_url=f"sqlite:///{folder / 'bench.db'}")
    store = create_store(settings.database_url)
    await store.open()
    try:
        await store.migrate()
        secret = new_secret()
        await store.create_token("admin", True, hash_secret(secret))
        outcome = await store.submit(NewJob(
            tenant="admin", job_type="diagnostics.sleep",
            payload={"seconds": 3600.0, "outcome": "complete"},
            description="asgi-server benchmark", expires_at=datetime.now(UTC) + timedelta(days=1),
            max_attempts=3, priority=0))
        app = create_app(store, load_registry([]), settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            response = await client.get(f"/api/v2/genai/status/{outcome.job.id}/",
                                        headers={"Authorization": f"Bearer {secret}"})
        response.raise_for_status()
        await asyncio.sleep(0.2)  # let the app's background "token last used" write land
        return Fixture(settings.database_url, secret, outcome.job.id, response.json())
    finally:
        await store.close()


# -- one server ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers.items()), exc.read()


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


def wait_ready(process: subprocess.Popen[bytes], base: str, log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_SECONDS:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if http_get(base + FLOOR_PATH, None)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready in {READY_TIMEOUT_SECONDS:g} s:\n{_tail(log)}")


def check_answers(base: str, fixture: Fixture) -> None:
    """The server answers as the app does: same body, the header, and auth enforced."""
    status, headers, body = http_get(base + fixture.path("status"), fixture.token)
    if status != 200 or json.loads(body) != fixture.status_body:
        raise RuntimeError(f"status route answered {status} {body!r}")
    if headers.get("retry-after") != "1":
        raise RuntimeError(f"status route without Retry-After: {headers}")
    status, _, body = http_get(base + FLOOR_PATH, None)
    if status != 200 or json.loads(body) != fixture.status_body:
        raise RuntimeError(f"floor route answered {status} {body!r}")
    status, _, _ = http_get(base + fixture.path("status"), None)
    if status != 401:
        raise RuntimeError(f"status route without a token answered {status}, not 401")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of `root` and its live descendants, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After "pid (comm)": state ppid ... utime(14th) stime(15th) of the full line.
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in tree)


def machine_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of the waited-for children of this process (here: the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, token: str, seconds: int) -> dict[str, Any]:
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(WRK_SCRIPT), "-H", f"Authorization: Bearer {token}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            report: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return report
    raise RuntimeError(f"no report from wrk:\n{done.stdout}\n{done.stderr}")


def measure(setup: Setup, route: str, round_no: int, base: str, pid: int, fixture: Fixture,
            seconds: int) -> Sample:
    url = base + fixture.path(route)
    run_wrk(url, fixture.token, WARMUP_SECONDS)
    cpu_before, busy_before, wrk_before = (tree_cpu_seconds(pid), machine_busy_seconds(),
                                           children_cpu_seconds())
    started = time.monotonic()
    report = run_wrk(url, fixture.token, seconds)
    wall = time.monotonic() - started
    cpu = tree_cpu_seconds(pid) - cpu_before
    others = (machine_busy_seconds() - busy_before) - cpu - (children_cpu_seconds() - wrk_before)
    requests = int(report["requests"])
    errors = sum(int(report[key]) for key in
                 ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return Sample(
        setup=setup.key, route=route, round=round_no,
        requests_per_second=requests / (report["duration_us"] / 1e6),
        p50_ms=report["p50_us"] / 1000, p90_ms=report["p90_us"] / 1000,
        p99_ms=report["p99_us"] / 1000, max_ms=report["max_us"] / 1000,
        server_cpu_us_per_request=cpu * 1e6 / max(requests, 1),
        others_cpu_share=max(0.0, others) / (wall * (os.cpu_count() or 1)),
        requests=requests, errors=errors,
    )


def stop(process: subprocess.Popen[bytes]) -> tuple[int | None, float, bool]:
    """SIGTERM, as an operator or an orchestrator would; SIGKILL the group only if stuck."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    killed = False
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        killed = True
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    elapsed = time.monotonic() - started
    try:  # a child left behind in the session we made for this server
        os.killpg(process.pid, signal.SIGKILL)
        killed = True
    except ProcessLookupError:
        pass
    return process.returncode, elapsed, killed


def bench_env(fixture: Fixture, async_services: bool) -> dict[str, str]:
    """What the app under test reads (bench/asgi_app.py, bench/inloop.py, bench/app_alone.py)."""
    return os.environ | {
        "GENAI_JOBS_DATABASE_URL": fixture.database_url,
        "GENAI_JOBS_WORKERS": "0",
        FLOOR_BODY_ENV: json.dumps(fixture.status_body),
        ASYNC_SERVICES_ENV: "1" if async_services else "0",
        "BENCH_STATUS_PATH": fixture.path("status"),
        "BENCH_TOKEN": fixture.token,
        "PYTHONPATH": str(REPO),
    }


def app_alone(fixture: Fixture, async_services: bool) -> dict[str, dict[str, float]]:
    """CPU us per request of the app called directly, no server (bench/app_alone.py)."""
    done = subprocess.run([sys.executable, "-m", "bench.app_alone"], cwd=REPO,
                          env=bench_env(fixture, async_services), capture_output=True, text=True,
                          timeout=120, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("APP_ALONE "):
            report: dict[str, dict[str, float]] = json.loads(line.removeprefix("APP_ALONE "))
            return report
    raise RuntimeError(f"no report from bench.app_alone:\n{done.stdout}\n{done.stderr}")


def run_setup(setup: Setup, fixture: Fixture, round_no: int, seconds: int, routes: Sequence[str],
              folder: Path, results: Results, async_services: bool) -> None:
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = bench_env(fixture, async_services)
    log = folder / f"{setup.key}-round{round_no}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(setup.argv(port), cwd=REPO, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    ready = 0.0
    try:
        ready = wait_ready(process, base, log)
        check_answers(base, fixture)
        for route in routes:
            sample = measure(setup, route, round_no, base, process.pid, fixture, seconds)
            results.samples.append(sample)
            print(f"  round {round_no} {setup.key:26} {route:6} "
                  f"{sample.requests_per_second:8.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
                  f"p99 {sample.p99_ms:6.2f} ms  "
                  f"cpu {sample.server_cpu_us_per_request:5.0f} us/req  "
                  f"others {sample.others_cpu_share:4.0%}"
                  f"{'  ERRORS ' + str(sample.errors) if sample.errors else ''}", flush=True)
    finally:
        exit_code, stop_seconds, killed = stop(process)
        results.launches.append(Launch(setup.key, round_no, _loop_name(log), ready, exit_code,
                                       stop_seconds, killed))


def _loop_name(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("bench-app:") and "loop=" in line:
            return line.rsplit("loop=", 1)[1].strip()
    return "?"


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- the report ---------------------------------------------------------------

def summarize(results: Results, setups: Sequence[Setup]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for route in ROUTES:
        route_rows: list[dict[str, Any]] = []
        for setup in setups:
            samples = [s for s in results.samples if s.setup == setup.key and s.route == route]
            if not samples:
                continue
            rps = [s.requests_per_second for s in samples]
            route_rows.append({
                "setup": setup.key, "route": route, "rounds": len(samples),
                "rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
                "p50_ms": statistics.median(s.p50_ms for s in samples),
                "p99_ms": statistics.median(s.p99_ms for s in samples),
                "cpu_us": statistics.median(s.server_cpu_us_per_request for s in samples),
                "others_cpu_share": statistics.median(s.others_cpu_share for s in samples),
                "errors": sum(s.errors for s in samples),
            })
        best = max((row["rps_median"] for row in route_rows), default=1.0)
        for row in route_rows:
            row["vs_best"] = row["rps_median"] / best
        rows.extend(route_rows)
    return rows


def markdown(rows: list[dict[str, Any]], results: Results, setups: Sequence[Setup]) -> str:
    lines = ["| setup | route | req/s (median) | min-max | vs best | p50 ms | p99 ms "
             "| server CPU us/req | others' CPU | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['setup']} | {row['route']} | {row['rps_median']:.0f} "
            f"| {row['rps_min']:.0f}-{row['rps_max']:.0f} | {row['vs_best']:.2f} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_us']:.0f} "
            f"| {row['others_cpu_share']:.0%} | {row['errors']} |")
    lines += ["", "| setup | status/floor req/s | app CPU us/req (status - floor) "
              "| loop seen | ready s | SIGTERM: exit code, seconds |",
              "|---|---:|---:|---|---:|---|"]
    by_key = {(row["setup"], row["route"]): row for row in rows}
    for setup in setups:
        status, floor = by_key.get((setup.key, "status")), by_key.get((setup.key, "floor"))
        launches = [launch for launch in results.launches if launch.setup == setup.key]
        if status is None or floor is None or not launches:
            continue
        loops = sorted({launch.loop for launch in launches})
        exits = sorted({f"{launch.exit_code}{' (killed)' if launch.killed else ''}"
                        for launch in launches})
        stop_s = max(launch.stop_seconds for launch in launches)
        ready_s = statistics.median(launch.ready_seconds for launch in launches)
        lines.append(
            f"| {setup.key} | {status['rps_median'] / floor['rps_median']:.2f} "
            f"| {status['cpu_us'] - floor['cpu_us']:.0f} | {', '.join(loops)} | {ready_s:.2f} "
            f"| {', '.join(exits)}; <= {stop_s:.2f} s |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")
    return {"python": platform.python_version(), "kernel": platform.release(),
            "cpu": cpu, "cores": os.cpu_count(),
            "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].strip(), "packages": versions}


# -- main ---------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=4, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=[s.key for s in SETUPS],
                        help="run only these setups")
    parser.add_argument("--max-minutes", type=float, default=12.0,
                        help="start no new server past this much time")
    parser.add_argument("--async-services", action="store_true",
                        help="serve the app with its get_services dependency made async "
                             "(no thread-pool hop per request): a what-if, not the real app")
    parser.add_argument("--out", type=Path, help="folder for results.json and results.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    setups = [s for s in SETUPS if not args.only or s.key in args.only]
    env = environment()
    print(json.dumps(env), flush=True)

    folder = Path(tempfile.mkdtemp(prefix="genai-jobs-asgi-bench-"))
    results = Results()
    alone: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + args.max_minutes * 60
    try:
        fixture = asyncio.run(make_fixture(folder))
        print(f"job {fixture.job_id}: {json.dumps(fixture.status_body)}", flush=True)
        alone = app_alone(fixture, args.async_services)
        print(f"app alone, CPU us/request (no server, one request at a time): {alone}",
              flush=True)
        for round_no in range(args.rounds):
            shift = round_no % len(setups)
            order = setups[shift:] + setups[:shift]
            routes = ROUTES if round_no % 2 == 0 else ROUTES[::-1]
            for setup in order:
                if time.monotonic() > deadline:
                    print(f"--max-minutes reached: stopping before round {round_no} "
                          f"{setup.key}", flush=True)
                    break
                run_setup(setup, fixture, round_no, args.duration, routes, folder, results,
                          args.async_services)
            else:
                continue
            break
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    rows = summarize(results, setups)
    table = markdown(rows, results, setups)
    table += "\n\nApp alone (no server, one request at a time), CPU us/request: " + "; ".join(
        f"{loop} loop: status {costs['status']:.0f}, floor {costs['floor']:.0f}"
        for loop, costs in alone.items())
    print()
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(table + "\n")
        (args.out / "results.json").write_text(json.dumps({
            "environment": env, "duration": args.duration, "rounds": args.rounds,
            "async_services": args.async_services, "app_alone": alone,
            "connections": CONNECTIONS, "wrk_threads": WRK_THREADS,
            "setups": {s.key: s.label for s in setups}, "summary": rows,
            "samples": [asdict(s) for s in results.samples],
            "launches": [asdict(launch) for launch in results.launches],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
