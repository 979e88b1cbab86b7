# ruff: noqa: RUF001  (the report is typeset: multiplication signs)
"""Hostile clients and noisy tenants (issue 10): what they cost everyone else.

    .venv/bin/python -m bench.hostile [--quick | --smoke] [--only CASE...] [--backends ...]
    .venv/bin/python bench/run.py --only hostile --no-peers     # as a section of the run

Five cases. Each starts a real `genai-jobs serve` on a fresh scratch store and measures
the same well-behaved clients on that same server twice: quiet first (the baseline),
then beside the hostile load. Verdicts are ratios between the two, or a figure against
the issue's limit; one absolute time decides nothing.

- `slow`: N sockets (2,000) each send part of a request head and go quiet, while
  well-behaved clients poll a job's status: their errors and p99 against the quiet
  p99, how long the server takes to close every slow socket, its RSS growth, and the
  log lines it writes about them (SQLite; the guard is the same on both stores);
- `longpolls`: 1,500 clients long-poll (`waitSeconds=30`) 30 RUNNING
  `diagnostics.sleep` jobs that report progress every second, first on the status
  route (not woken by progress), then on the jobs route (woken by every change); a
  paced submitter's p50 beside each, against its p50 with one long-poll, and the
  server's CPU (PostgreSQL);
- `pages`: 400 requests for `GET /jobs/?limit=1000` (1,000 jobs stored) at once from
  one token: another client's status p99 against quiet, and how many pages were 503
  instead of waiting for one of the few slots (both stores);
- `distinct_pages`: the same, but each of the 400 asks for another offset
  (`offset=0` to `399`), so that no two can share a reading (both stores);
- `uploads`: 10 uploads of a 160 MB .txt at once to `datasets/fromFile/`: others'
  status p99 against quiet, and the server's peak RSS over its RSS before, against
  the bound the admission slots give, max concurrent uploads x 3 x the size (SQLite);
- `flood`: tenant A submits 3,000 jobs of 0.2 s as fast as 16 connections can, then
  tenant B submits one at a time: how long until each of B's jobs starts, from the
  server's own `created` and `startedAt` (both stores).

The well-behaved clients: PROBE_CLIENTS connections, each sending a status GET every
PROBE_INTERVAL seconds (one of them opens a new connection for each request; the
others keep theirs), on raw asyncio sockets so that the client's own CPU stays small.
Everything runs on 127.0.0.1; every loop is bounded in count and in time; each case
stops its server and drops its store whatever happens. Results: bench/results/hostile/
(`results.json`, `results.md`); `--benchmarks BENCHMARKS.md` also puts the section in
the report, in place of the one there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import multiprocessing
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.harness import HOST, Run, Scratch, Service
from bench.waiters import raise_fd_limit, waiting_now

from genai_jobs.tokens import hash_secret, new_secret

API = "/api/v2/genai"
UPLOAD_PATH = "/api/v2/datasets/fromFile/"
CASES = ("slow", "longpolls", "pages", "distinct_pages", "uploads", "flood")
# The stores each case runs on, of those the run measures (--all-stores: every one).
CASE_STORES: dict[str, tuple[str, ...]] = {
    "slow": ("sqlite",), "longpolls": ("postgres",), "pages": harness.BACKENDS,
    "distinct_pages": harness.BACKENDS,
    "uploads": ("sqlite",), "flood": harness.BACKENDS}
RESULTS = harness.BENCH / "results" / "hostile"
# Kept by hand (what the figures show, what was measured beside them): copied in under the
# table, as bench/report.py copies bench/NOTES.md.
NOTES = RESULTS / "notes.md"
HEADING = "## 9. Hostile clients and noisy tenants (issue 10)"
SETTINGS_HEADING = "## Settings and versions"

# The well-behaved clients.
PROBE_CLIENTS = 4
PROBE_INTERVAL = 0.02  # seconds between two requests of one client
WARM_UP_REQUESTS = 50
REQUEST_SECONDS = 15.0  # the longest a well-behaved request may take: past it, an error
PROBE_START_SECONDS = 30.0  # for the process of the well-behaved clients to start
# Opening many connections: at most this many being opened at once.
CONNECT_BATCH = 100
CONNECT_SECONDS = 10.0
# The server's RSS is sampled this often, from a thread of its own.
RSS_EVERY = 0.05

# The targets.
P99_RATIO_LIMIT = 2.0
# The big pages' p99 is taken from this long after they were sent: what comes before is
# the arrival of 400 requests at once, which every kind of request costs (measured
# beside it: the same volley of /healthz).
ARRIVAL_SECONDS = 0.1
SUBMIT_P50_RATIO_LIMIT = 2.0
CLOSE_LIMIT_SECONDS = 30.0
RSS_GROWTH_LIMIT_MB = 100.0
START_LIMIT_SECONDS = 5.0
UPLOAD_MEMORY_FACTOR = 3.0  # an ingest peaks at ~3x its upload (api/admission.py, measured)
LOG_EVERY_SECONDS = 10.0  # api/connections.py: one line per kind this often at most

# The cases' fixed settings.
LONGPOLL_COUNTERS = ("wakeups", "reads")  # genai_jobs_longpoll_*_total in /metrics
RELEASE_SLACK_SECONDS = 15.0  # past a long-poll's waitSeconds, for clients that left
PAGE_LIMIT = 1000
BIG_PAGE_SLOTS = 1  # GENAI_JOBS_MAX_CONCURRENT_BIG_PAGES, the default
BUSY_QUEUE_SECONDS = 30.0  # GENAI_JOBS_BUSY_QUEUE_SECONDS, the default
UPLOAD_SLOTS = 2  # GENAI_JOBS_MAX_CONCURRENT_UPLOADS, the default
UPLOAD_CHUNK = 1 << 20
UPLOAD_SECONDS = 300.0  # the longest one upload may take, sent and answered
WARM_UP_UPLOAD_BYTES = 100_000
FLOOD_CONNECTIONS = 16
B_JOBS = 5  # tenant B's jobs, one after another
START_WAIT_SECONDS = 60.0  # the longest we wait for one of B's jobs to start
POLL_EVERY = 0.02


@dataclass(frozen=True)
class Sizes:
    slow_sockets: int
    header_seconds: float | None  # the server's head time-out; None: its default (10 s)
    long_pollers: int
    running_jobs: int
    big_pages: int
    stored_jobs: int
    uploads: int
    upload_bytes: int
    flood_jobs: int
    flood_job_seconds: float
    quiet_seconds: float  # each baseline, and each measured window of `longpolls`
    wait_seconds: int  # each long-poll's waitSeconds


FULL = Sizes(slow_sockets=2000, header_seconds=None, long_pollers=1500, running_jobs=30,
             big_pages=400, stored_jobs=1000, uploads=10, upload_bytes=160_000_000,
             flood_jobs=3000, flood_job_seconds=0.2, quiet_seconds=10.0, wait_seconds=30)
QUICK = Sizes(slow_sockets=300, header_seconds=2.0, long_pollers=150, running_jobs=6,
              big_pages=60, stored_jobs=300, uploads=3, upload_bytes=16_000_000,
              flood_jobs=300, flood_job_seconds=0.2, quiet_seconds=2.0, wait_seconds=5)
SMOKE = Sizes(slow_sockets=20, header_seconds=1.0, long_pollers=20, running_jobs=2,
              big_pages=8, stored_jobs=50, uploads=2, upload_bytes=1_000_000,
              flood_jobs=40, flood_job_seconds=0.05, quiet_seconds=1.0, wait_seconds=2)


# -- HTTP/1.1 on raw sockets ------------------------------------------------------------

CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")
CLOSES = re.compile(rb"(?im)^connection:\s*close")


class ProtocolError(Exception):
    """An answer this small client does not read (no Content-Length)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    closes: bool


@dataclass(frozen=True)
class Call:
    """One request, as a well-behaved client sends it again and again."""

    method: str
    target: str
    token: str
    body: bytes = b""
    expect: int = 200


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole answer."""

    def __init__(self, port: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        async with asyncio.timeout(CONNECT_SECONDS):
            reader, writer = await asyncio.open_connection(HOST, port)
        return cls(port, reader, writer)

    def head(self, method: str, target: str, token: str, length: int | None = None,
             content_type: str = "application/json") -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{self.port}",
                 f"Authorization: Bearer {token}"]
        if length is not None:
            lines += [f"Content-Type: {content_type}", f"Content-Length: {length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def send(self, call: Call) -> None:
        with_body = call.method in ("POST", "PUT")
        self.writer.write(self.head(call.method, call.target, call.token,
                                    len(call.body) if with_body else None) + call.body)
        await self.writer.drain()

    async def answer(self) -> Answer:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = CONTENT_LENGTH.search(head)
        if length is None and status not in (204, 304):
            raise ProtocolError(f"no Content-Length in {head[:200]!r}")
        body = await self.reader.readexactly(int(length.group(1))) if length else b""
        return Answer(status, body, CLOSES.search(head) is not None)

    async def request(self, call: Call) -> Answer:
        await self.send(call)
        return await self.answer()

    def close(self) -> None:
        self.writer.close()


async def request_once(port: int, call: Call, seconds: float = REQUEST_SECONDS) -> Answer:
    """One request on a connection of its own."""
    async with asyncio.timeout(seconds):
        connection = await Connection.open(port)
        try:
            return await connection.request(call)
        finally:
            connection.close()


def json_of(answer: Answer, expect: int, what: str) -> Any:
    if answer.status != expect:
        raise RuntimeError(f"{what}: {answer.status} {answer.body[:300]!r}")
    return json.loads(answer.body)


# -- well-behaved clients ---------------------------------------------------------------

ERRORS = (OSError, EOFError, TimeoutError, ProtocolError, asyncio.IncompleteReadError,
          asyncio.LimitOverrunError, ValueError, IndexError)


@dataclass
class Tally:
    """Latencies of the answers as expected; everything else counted by kind."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent_at: list[float] = field(default_factory=list)  # time.monotonic() of each request

    def between(self, start: float, end: float) -> Tally:
        """The answers to requests sent from `start` to `end`; every error."""
        kept = [(ms, sent) for ms, sent in zip(self.latencies_ms, self.sent_at, strict=True)
                if start <= sent < end]
        return Tally([ms for ms, _ in kept], self.errors, [sent for _, sent in kept])

    def slowest(self, since: float, count: int = 10) -> list[tuple[float, float]]:
        """(seconds after `since` it was sent, ms) of the `count` slowest answers."""
        pairs = sorted(zip(self.latencies_ms, self.sent_at, strict=True))[-count:]
        return [(round(sent - since, 2), round(ms, 1)) for ms, sent in reversed(pairs)]

    def summary(self) -> dict[str, Any]:
        return {**harness.percentiles(self.latencies_ms),
                "max": max(self.latencies_ms, default=math.nan),
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors)}


async def paced(port: int, call: Call, stopped: Callable[[], bool], seconds: float,
                clients: int = PROBE_CLIENTS, interval: float = PROBE_INTERVAL,
                one_fresh: bool = True) -> Tally:
    """`clients` clients sending `call` every `interval` s until `stopped()` or `seconds`;
    with `one_fresh`, client 0 opens a new connection for each request."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_paced_client(port, call, stopped, deadline, interval, tally,
                                         fresh=one_fresh and number == 0)
                           for number in range(clients)))
    return tally


async def _paced_client(port: int, call: Call, stopped: Callable[[], bool], deadline: float,
                        interval: float, tally: Tally, fresh: bool) -> None:
    connection: Connection | None = None
    due = time.monotonic()
    while not stopped() and time.monotonic() < deadline:
        started, sent_at = time.perf_counter(), time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                connection = connection or await Connection.open(port)
                answer = await connection.request(call)
            if answer.status == call.expect:
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
                tally.sent_at.append(sent_at)
            else:
                tally.errors[f"status {answer.status}"] += 1
            if fresh or answer.closes:
                connection.close()
                connection = None
        except ERRORS as exc:
            tally.errors[type(exc).__name__] += 1
            if connection is not None:
                connection.close()
                connection = None
        due = max(due + interval, time.monotonic())  # late: no burst to catch up
        await asyncio.sleep(due - time.monotonic())
    if connection is not None:
        connection.close()


class Probe:
    """Well-behaved clients (`paced`) in a process of their own, so that what this
    process does meanwhile (2,000 sockets closed at once, 1,500 long-polls answered)
    never delays their answers: what they measure is the server. They run from the
    block's start until it is left, at most `longest` s; then `tally()`."""

    def __init__(self, port: int, call: Call, longest: float, clients: int = PROBE_CLIENTS,
                 one_fresh: bool = True) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._stop = context.Event()
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(
            target=_probe_process, daemon=True,
            args=(port, dataclasses.astuple(call), longest, clients, one_fresh, self._stop,
                  theirs))
        self._longest = longest
        self._result: Tally | None = None

    def __enter__(self) -> Probe:
        self._process.start()
        if not self._pipe.poll(PROBE_START_SECONDS) or self._pipe.recv() != "ready":
            self._end()
            raise RuntimeError(f"the probe process did not start in {PROBE_START_SECONDS} s")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.collect(REQUEST_SECONDS + PROBE_START_SECONDS)
        self._end()

    def collect(self, timeout: float) -> None:
        """Wait at most `timeout` s for the figures (the clients stop at their deadline)."""
        if self._result is None and self._pipe.poll(timeout):
            latencies, errors, sent_at = self._pipe.recv()
            self._result = Tally(latencies, Counter(errors), sent_at)

    def _end(self) -> None:
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=10)

    def tally(self) -> Tally:
        if self._result is None:
            raise RuntimeError("the probe process sent no figures")
        return self._result


def _probe_process(port: int, call: tuple[Any, ...], longest: float, clients: int,
                   one_fresh: bool, stop: Any, pipe: Any) -> None:
    async def warm_then_paced() -> Tally:
        # A new process's first requests take the code paths it has not run yet (a few
        # ms each): made before `ready`, they are not counted as the server's.
        await asyncio.gather(*(request_once(port, Call(*call)) for _ in range(clients)))
        pipe.send("ready")
        return await paced(port, Call(*call), stop.is_set, longest, clients,
                           one_fresh=one_fresh)

    tally = asyncio.run(warm_then_paced())
    pipe.send((tally.latencies_ms, dict(tally.errors), tally.sent_at))


async def measured(port: int, call: Call, seconds: float) -> Tally:
    """`seconds` of the well-behaved clients, while this loop does nothing else."""
    async with probing(port, call, seconds) as probe:
        await asyncio.to_thread(probe.collect, seconds + REQUEST_SECONDS + PROBE_START_SECONDS)
    return probe.tally()


async def baseline(port: int, call: Call, seconds: float) -> Tally:
    """Warm the route up, then the quiet baseline."""
    for _ in range(WARM_UP_REQUESTS):
        await request_once(port, call)
    return await measured(port, call, seconds)


@contextlib.asynccontextmanager
async def probing(port: int, call: Call, longest: float, clients: int = PROBE_CLIENTS,
                  one_fresh: bool = True) -> AsyncIterator[Probe]:
    """The well-behaved clients for the length of the block (at most `longest` s), started
    before it; `tally()` once the block is left."""
    probe = Probe(port, call, longest, clients, one_fresh)
    await asyncio.to_thread(probe.__enter__)
    try:
        yield probe
    finally:
        await asyncio.to_thread(probe.__exit__)


def probe_figures(quiet: Tally, loaded: Tally) -> dict[str, Any]:
    q, lo = quiet.summary(), loaded.summary()
    return {"quiet": q, "loaded": lo, "p99_ratio": _ratio(lo["p99"], q["p99"]),
            "p50_ratio": _ratio(lo["p50"], q["p50"])}


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference and reference == reference else math.nan


# -- the server process ----------------------------------------------------------------

class ServerWatch:
    """The server's peak RSS (sampled from a thread, so that a busy event loop here
    does not miss it) and its CPU time, over the block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_mib = harness.rss_mib(pid)
        self.peak_mib = self.before_mib
        self.cpu_share = math.nan
        self.seconds = math.nan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(RSS_EVERY):  # ends when the block is left
            with contextlib.suppress(OSError):
                self.peak_mib = max(self.peak_mib, harness.rss_mib(self.pid))

    def __enter__(self) -> ServerWatch:
        self._cpu0, self._wall0 = harness.cpu_seconds(self.pid), time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.seconds = time.monotonic() - self._wall0
        self.cpu_share = (harness.cpu_seconds(self.pid) - self._cpu0) / self.seconds

    @property
    def growth_mb(self) -> float:
        return (self.peak_mib - self.before_mib) * 2**20 / 1e6

    def figures(self) -> dict[str, float]:
        return {"rss_before_mib": self.before_mib, "rss_peak_mib": self.peak_mib,
                "rss_growth_mb": self.growth_mb, "cpu_share": self.cpu_share,
                "seconds": self.seconds}


@contextlib.contextmanager
def served(kind: str, folder: Path, *args: str, env: dict[str, str] | None = None,
           prepare: Callable[[Scratch], Any] | None = None) -> Iterator[tuple[Scratch, Service,
                                                                                Any]]:
    """A fresh store (`prepare` runs on it first) and `serve` on it; both gone after."""
    with harness.scratch_store(kind, folder) as scratch:
        prepared = prepare(scratch) if prepare is not None else None
        with Service.genai_jobs("serve", scratch.url, folder, *args, env=env) as server:
            yield scratch, server, prepared


def seed(scratch: Scratch, tenants: Sequence[str], jobs: dict[str, int]) -> dict[str, Any]:
    """A token for each of `tenants`, and `jobs[tenant]` stored jobs of each (bench.noop,
    never run): {"tokens": {tenant: secret}, "jobs": {tenant: [id, ...]}}."""
    async def make() -> dict[str, Any]:
        async with harness.opened(scratch.url) as store:
            tokens: dict[str, str] = {}
            for tenant in tenants:
                tokens[tenant] = new_secret()
                await store.create_token(tenant, False, hash_secret(tokens[tenant]))
            ids = {tenant: [str((await store.submit(harness.noop_job(tenant))).job.id)
                            for _ in range(count)] for tenant, count in jobs.items()}
        return {"tokens": tokens, "jobs": ids}

    return asyncio.run(make())


def status_call(prepared: dict[str, Any], tenant: str = "probe") -> Call:
    job_id = prepared["jobs"][tenant][0]
    return Call("GET", f"{API}/status/{job_id}/", prepared["tokens"][tenant])


def log_lines(server: Service, pattern: str) -> list[str]:
    return [line for line in server.output().splitlines() if re.search(pattern, line)]


# -- 1. slow sockets --------------------------------------------------------------------

SLOW_LOG = r"closed a connection|refused a connection"


@dataclass
class SlowSocket:
    sent: float = math.nan  # when its partial head had gone out
    closed: float = math.nan  # when the server closed it (EOF or reset)
    answer: bytes = b""
    failed: str = ""


def case_slow(ctx: Run, sizes: Sizes, kind: str) -> dict[str, Any]:
    env = ({} if sizes.header_seconds is None
           else {"GENAI_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": f"{sizes.header_seconds:g}"})
    with served(kind, ctx.folder, "--workers", "0", env=env,
                prepare=lambda s: seed(s, ["probe"], {"probe": 1})) as (_, server, prepared):
        outcome = asyncio.run(_slow(server, prepared, sizes))
    head = sizes.header_seconds or 10.0
    outcome["settings"] = {"sockets": sizes.slow_sockets, "header_timeout_seconds": head}
    lines = outcome["log_line_count"]
    allowed = math.ceil(outcome["load_seconds"] / LOG_EVERY_SECONDS) + 1
    outcome["targets"] = [
        _target("well-behaved clients' errors = 0", f"{outcome['probe']['loaded']['errors']} "
                f"of {_requests(outcome['probe']['loaded'])}",
                outcome["probe"]["loaded"]["errors"] == 0),
        _p99_target(outcome["probe"]),
        _target(f"every slow socket closed ≤ {CLOSE_LIMIT_SECONDS:g} s after it went quiet "
                f"(head time-out {head:g} s)",
                f"{outcome['closed']} of {sizes.slow_sockets} closed; slowest "
                f"{outcome['close_seconds']['max']:.1f} s (p50 "
                f"{outcome['close_seconds']['p50']:.1f} s); all closed "
                f"{outcome['all_closed_after']:.1f} s after the last went quiet",
                outcome["closed"] == sizes.slow_sockets
                and outcome["close_seconds"]["max"] <= CLOSE_LIMIT_SECONDS),
        _target(f"server RSS growth < {RSS_GROWTH_LIMIT_MB:g} MB",
                f"+{outcome['server']['rss_growth_mb']:.1f} MB "
                f"({outcome['server']['rss_before_mib']:.0f} → "
                f"{outcome['server']['rss_peak_mib']:.0f} MiB)",
                outcome["server"]["rss_growth_mb"] < RSS_GROWTH_LIMIT_MB),
        _target(f"log lines about them rate-limited (≤ 1 per {LOG_EVERY_SECONDS:g} s and "
                "kind)", f"{lines} lines in {outcome['load_seconds']:.0f} s",
                lines <= allowed)]
    return outcome


async def _slow(server: Service, prepared: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    port, call = server.port or 0, status_call(prepared)
    quiet = await baseline(port, call, sizes.quiet_seconds)
    lines_before = len(log_lines(server, SLOW_LOG))
    head = sizes.header_seconds or 10.0
    longest = head + CLOSE_LIMIT_SECONDS + 60.0  # opening them all, then their time-out
    gate = asyncio.Semaphore(CONNECT_BATCH)
    partial = (f"GET {call.target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthoriz").encode()
    sockets = [SlowSocket() for _ in range(sizes.slow_sockets)]
    started = time.monotonic()
    with ServerWatch(server.pid) as watch:
        async with probing(port, call, longest) as probe:
            await asyncio.gather(*(_go_quiet(port, partial, gate, one, longest)
                                   for one in sockets))
    closed = [one for one in sockets if one.closed == one.closed]
    sent = [one.sent for one in sockets if one.sent == one.sent]
    lines = log_lines(server, SLOW_LOG)[lines_before:]
    return {"probe": probe_figures(quiet, probe.tally()), "server": watch.figures(),
            "slowest_requests": probe.tally().slowest(started),
            "last_quiet_after": max(sent, default=math.nan) - started,
            "first_closed_after": min((one.closed for one in closed), default=math.nan)
            - started,
            "opened": len(sent), "closed": len(closed),
            "answers": dict(Counter(one.answer[:12].decode(errors="replace") or "(none)"
                                    for one in closed)),
            "failures": dict(Counter(one.failed for one in sockets if one.failed)),
            "close_seconds": _spread_of([one.closed - one.sent for one in closed]),
            "all_closed_after": (max((one.closed for one in closed), default=math.nan)
                                 - max(sent, default=math.nan)),
            "load_seconds": time.monotonic() - started, "log_line_count": len(lines),
            "log_lines": lines[:20]}


async def _go_quiet(port: int, partial: bytes, gate: asyncio.Semaphore, one: SlowSocket,
                    longest: float) -> None:
    """Open, send `partial`, say nothing more; note when the server closes it."""
    try:
        async with gate:
            connection = await Connection.open(port)
            connection.writer.write(partial)
            await connection.writer.drain()
            one.sent = time.monotonic()
    except ERRORS as exc:
        one.failed = f"open: {type(exc).__name__}"
        return
    try:
        async with asyncio.timeout(longest):
            for _ in range(1000):  # a 408 answer at most, then the end
                part = await connection.reader.read(65536)
                if not part:
                    break
                one.answer += part
        one.closed = time.monotonic()
    except ConnectionResetError:
        one.closed = time.monotonic()
    except ERRORS as exc:
        one.failed = f"wait: {type(exc).__name__}"
    finally:
        connection.close()


# -- 2. long-polls on running jobs ------------------------------------------------------

@dataclass
class Pollers:
    """Long-poll clients; each sends its next long-poll as soon as one is answered."""

    sent: int = 0
    answered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


def case_longpolls(ctx: Run, sizes: Sizes, kind: str) -> dict[str, Any]:
    # Short grace: the sleeping jobs are aborted at the end anyway.
    env = {"GENAI_JOBS_SHUTDOWN_GRACE_SECONDS": "2"}
    with served(kind, ctx.folder, "--workers", "1", "--concurrency", str(sizes.running_jobs),
                env=env, prepare=lambda s: seed(s, ["submitter"], {})) as (scratch, server,
                                                                          prepared):
        outcome = asyncio.run(_longpolls(server, scratch, prepared, sizes))
    outcome["settings"] = {"long_pollers": sizes.long_pollers, "jobs": sizes.running_jobs,
                           "wait_seconds": sizes.wait_seconds,
                           "window_seconds": sizes.quiet_seconds}
    one = outcome["phases"]["one"]
    outcome["targets"] = [
        _target(f"submit p50 with {sizes.long_pollers:,} long-polls on the {route} route ≤ "
                f"{SUBMIT_P50_RATIO_LIMIT:g}× with one long-poll",
                f"{phase['submit']['p50']:.2f} ms vs {one['submit']['p50']:.2f} ms; "
                f"server CPU {phase['server']['cpu_share']:.0%} of a core (one long-poll: "
                f"{one['server']['cpu_share']:.0%})",
                phase["submit_p50_ratio"] <= SUBMIT_P50_RATIO_LIMIT
                and phase["submit"]["errors"] == 0, phase["submit_p50_ratio"])
        for route, phase in (("status", outcome["phases"]["status"]),
                             ("jobs", outcome["phases"]["jobs"]))]
    return outcome


async def _longpolls(server: Service, scratch: Scratch, prepared: dict[str, Any],
                     sizes: Sizes) -> dict[str, Any]:
    port = server.port or 0
    jobs = await _start_sleepers(port, scratch.tenant_token, sizes.running_jobs)
    submit = Call("POST", f"{API}/jobs/", prepared["tokens"]["submitter"], json.dumps(
        {"jobType": "diagnostics.sleep", "payload": {"seconds": 0}}).encode(), 202)
    for _ in range(WARM_UP_REQUESTS):
        await request_once(port, submit)
    phases: dict[str, Any] = {}
    try:
        for name, count, route in (("one", 1, "status"), ("status", sizes.long_pollers,
                                                          "status"),
                                   ("jobs", sizes.long_pollers, "jobs")):
            targets = [f"{API}/{route}/{jobs[number % len(jobs)]}/?waitSeconds="
                       f"{sizes.wait_seconds}" for number in range(count)]
            phases[name] = await _longpoll_phase(server, scratch.tenant_token, targets,
                                                 submit, sizes)
            phases[name]["route"] = route
    finally:
        for job_id in jobs:  # abort the sleepers, so that the server stops at once
            with contextlib.suppress(*ERRORS):
                await request_once(port, Call("DELETE", f"{API}/status/{job_id}/",
                                              scratch.tenant_token, expect=202))
    for name in ("status", "jobs"):
        phases[name]["submit_p50_ratio"] = _ratio(phases[name]["submit"]["p50"],
                                                  phases["one"]["submit"]["p50"])
    return {"phases": phases}


async def _start_sleepers(port: int, token: str, count: int) -> list[str]:
    """`count` diagnostics.sleep jobs, RUNNING (a worker slot each) before this returns."""
    sleep = Call("POST", f"{API}/jobs/", token, json.dumps(
        {"jobType": "diagnostics.sleep", "payload": {"seconds": 900}}).encode(), 202)
    jobs = [json_of(await request_once(port, sleep), 202, "submit")["statusId"]
            for _ in range(count)]
    running = Call("GET", f"{API}/jobs/?status=RUNNING&limit=1", token)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if json_of(await request_once(port, running), 200, "list")["totalCount"] >= count:
            return jobs
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} sleeping jobs not all RUNNING after 60 s")


async def _longpoll_phase(server: Service, token: str, targets: Sequence[str], submit: Call,
                          sizes: Sizes) -> dict[str, Any]:
    """A long-poll client for each target, held; a paced submitter for `quiet_seconds`
    beside them; then the clients leave, and (unless there was one) the server's waiters
    must go too."""
    port, count = server.port or 0, len(targets)
    pollers = Pollers()
    gate = asyncio.Semaphore(CONNECT_BATCH)
    for target in targets:
        pollers.tasks.append(asyncio.create_task(_long_poll(
            port, Call("GET", target, token), gate, pollers, sizes.wait_seconds)))
    try:
        held = await _until_held(server.base, pollers, count, "/status/" in targets[0])
        async with probing(port, submit, sizes.quiet_seconds, 1, one_fresh=False) as probe:
            answered0, counted0 = pollers.answered, await asyncio.to_thread(counters, server)
            with ServerWatch(server.pid) as watch:
                await asyncio.to_thread(probe.collect, sizes.quiet_seconds + REQUEST_SECONDS)
            answered, counted = pollers.answered - answered0, await asyncio.to_thread(
                counters, server)
        tally = probe.tally()
    finally:
        await pollers.close()
    released = (await _until_released(server.base, sizes.wait_seconds + RELEASE_SLACK_SECONDS)
                if count > 1 else math.nan)
    return {"long_polls": count, "held_seconds": held,
            "submit": tally.summary(), "server": watch.figures(),
            "long_poll_answers_per_second": answered / watch.seconds,
            **{f"{name}_per_second": (counted[name] - counted0[name]) / watch.seconds
               for name in LONGPOLL_COUNTERS},
            "long_poll_errors": dict(pollers.errors), "waiters_gone_after": released}


def counters(server: Service) -> dict[str, float]:
    """The server's long-poll counters (/metrics), nan where unread."""
    status, _, body = harness.http_get(server.base + "/metrics")
    found = {}
    for name in LONGPOLL_COUNTERS:
        match = re.search(rf"^genai_jobs_longpoll_{name}_total (\S+)$".encode(), body,
                          re.MULTILINE)
        found[name] = float(match.group(1)) if status == 200 and match else math.nan
    return found


async def _long_poll(port: int, call: Call, gate: asyncio.Semaphore, pollers: Pollers,
                     wait_seconds: float) -> None:
    """Long-poll until cancelled, a new long-poll as soon as one is answered."""
    async with gate:
        connection = await Connection.open(port)
    try:
        for _ in range(10_000):  # and cancelled when its phase ends
            pollers.sent += 1
            try:
                async with asyncio.timeout(wait_seconds + REQUEST_SECONDS):
                    answer = await connection.request(call)
            except ERRORS as exc:
                pollers.errors[type(exc).__name__] += 1
                return
            if answer.status != 200:
                pollers.errors[f"status {answer.status}"] += 1
            pollers.answered += 1
    finally:
        connection.close()


async def _until_held(base: str, pollers: Pollers, count: int, all_held: bool) -> float:
    """Seconds until every client has sent a long-poll and the server holds them (all of
    them on the status route; on the jobs route, answered at each progress, half)."""
    started = time.monotonic()
    wanted = count if all_held else count / 2
    while time.monotonic() - started < 120:
        if pollers.sent >= count and await asyncio.to_thread(waiting_now, base) >= wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{count} long-polls not held after 120 s (sent {pollers.sent}, "
                       f"errors {dict(pollers.errors)})")


async def _until_released(base: str, longest: float) -> float:
    """Seconds until the server holds no long-poll of clients that left (nan: not within
    `longest`)."""
    started = time.monotonic()
    while time.monotonic() - started < longest:
        if await asyncio.to_thread(waiting_now, base) <= 0:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return math.nan


# -- 3. big pages -----------------------------------------------------------------------

def case_pages(ctx: Run, sizes: Sizes, kind: str, distinct: bool = False) -> dict[str, Any]:
    with served(kind, ctx.folder, "--workers", "0", prepare=lambda s: seed(
            s, ["probe", "pages"], {"probe": 1, "pages": sizes.stored_jobs})) as (_, server,
                                                                                   prepared):
        outcome = asyncio.run(_pages(server, prepared, sizes, distinct))
    outcome["settings"] = {"pages": sizes.big_pages, "stored_jobs": sizes.stored_jobs,
                           "limit": PAGE_LIMIT, "slots": BIG_PAGE_SLOTS,
                           "queue_seconds": BUSY_QUEUE_SECONDS, "distinct": distinct}
    statuses, arrival = outcome["page_statuses"], outcome["arrival_worst_ms"]
    outcome["targets"] = [
        _p99_target(outcome["probe"], f", from {ARRIVAL_SECONDS:g} s after they were sent"),
        _target("a poll sent with them waits no longer than beside as many /healthz at once",
                f"slowest {arrival['pages']:.1f} ms beside the pages, "
                f"{arrival['healthz']:.1f} ms beside {sizes.big_pages} /healthz",
                arrival["pages"] <= arrival["healthz"]),
        _target("big pages wait for a slot rather than fail (503s: few)",
                f"{statuses.get('503', 0)} of {sizes.big_pages} were 503; "
                f"{statuses.get('200', 0)} answered 200, the last after "
                f"{outcome['page_seconds']['max']:.1f} s",
                statuses.get("200", 0) == sizes.big_pages)]
    return outcome


def case_distinct_pages(ctx: Run, sizes: Sizes, kind: str) -> dict[str, Any]:
    return case_pages(ctx, sizes, kind, distinct=True)


async def _pages(server: Service, prepared: dict[str, Any], sizes: Sizes,
                 distinct: bool) -> dict[str, Any]:
    port, call = server.port or 0, status_call(prepared)
    page = Call("GET", f"{API}/jobs/?limit={PAGE_LIMIT}", prepared["tokens"]["pages"])
    pages = [Call("GET", f"{page.target}&offset={number}", page.token) if distinct else page
             for number in range(sizes.big_pages)]
    body = (await request_once(port, page)).body
    quiet = await baseline(port, call, sizes.quiet_seconds)
    gate = asyncio.Semaphore(CONNECT_BATCH)

    async def opened() -> Connection:
        async with gate:
            return await Connection.open(port)

    connections = await asyncio.gather(*(opened() for _ in range(sizes.big_pages)))
    health = Call("GET", "/healthz", page.token)
    # A client's connect returns before the server has taken the connection in: wait
    # until it has taken in the last one (it accepts in order), so that what is
    # measured is 400 pages asked for at once, not 400 connections opened (the slow
    # case measures those).
    async with asyncio.timeout(REQUEST_SECONDS):
        await connections[-1].request(health)
    fire = asyncio.Event()
    outcomes: list[tuple[str, float]] = []
    longest = BUSY_QUEUE_SECONDS + 120.0
    fired = pages_done = health_fired = math.nan
    try:
        with ServerWatch(server.pid) as watch:
            async with probing(port, call, longest) as probe:
                waiting = [asyncio.create_task(_one_page(c, asked, fire, outcomes, longest))
                           for c, asked in zip(connections, pages, strict=True)]
                fired = time.monotonic()
                fire.set()
                await asyncio.gather(*waiting)
                pages_done = time.monotonic()
                # The floor: as many trivial requests at once, on the same connections.
                await asyncio.sleep(3 * ARRIVAL_SECONDS)
                health_fired = time.monotonic()
                async with asyncio.timeout(REQUEST_SECONDS):
                    await asyncio.gather(*(c.request(health) for c in connections))
                await asyncio.sleep(3 * ARRIVAL_SECONDS)
    finally:
        for connection in connections:
            connection.close()
    tally = probe.tally()
    served = tally.between(fired + ARRIVAL_SECONDS, pages_done)
    return {"probe": probe_figures(quiet, served if served.latencies_ms else tally),
            "server": watch.figures(), "slowest_requests": tally.slowest(fired),
            "arrival_worst_ms": {"pages": _worst_arrival(tally, fired),
                                 "healthz": _worst_arrival(tally, health_fired)},
            "page_bytes": len(body), "page_statuses": dict(Counter(s for s, _ in outcomes)),
            "page_seconds": _spread_of([seconds for _, seconds in outcomes])}


def _worst_arrival(tally: Tally, fired: float) -> float:
    """The slowest answer to a request in flight when a volley was sent or sent just after."""
    return max(tally.between(fired - PROBE_INTERVAL, fired + ARRIVAL_SECONDS).latencies_ms,
               default=math.nan)


async def _one_page(connection: Connection, page: Call, fire: asyncio.Event,
                    outcomes: list[tuple[str, float]], longest: float) -> None:
    await fire.wait()
    started = time.monotonic()
    try:
        async with asyncio.timeout(longest):
            answer = await connection.request(page)
        outcomes.append((str(answer.status), time.monotonic() - started))
    except ERRORS as exc:
        outcomes.append((type(exc).__name__, time.monotonic() - started))


# -- 4. uploads -------------------------------------------------------------------------

def case_uploads(ctx: Run, sizes: Sizes, kind: str) -> dict[str, Any]:
    limit = max(sizes.upload_bytes + (1 << 20), 50 << 20)
    env = {"GENAI_JOBS_DATASET_MAX_FILE_BYTES": str(limit),
           "GENAI_JOBS_DATASET_MAX_TOTAL_BYTES": str(max(limit, 500 << 20)),
           "GENAI_JOBS_DATASET_MAX_UPLOAD_BYTES": str(max(limit + (1 << 20), 512 << 20))}
    with tempfile.TemporaryDirectory(dir=ctx.folder) as tmp:
        texts = (make_text(Path(tmp), WARM_UP_UPLOAD_BYTES, "small.txt"),
                 make_text(Path(tmp), sizes.upload_bytes, "large.txt"))
        with served(kind, ctx.folder, "--workers", "0", env=env, prepare=lambda s: seed(
                s, ["probe", "uploader"], {"probe": 1})) as (_, server, prepared):
            outcome = asyncio.run(_uploads(server, prepared, sizes, texts))
    bound_mb = UPLOAD_SLOTS * UPLOAD_MEMORY_FACTOR * sizes.upload_bytes / 1e6
    outcome["settings"] = {"uploads": sizes.uploads, "bytes": sizes.upload_bytes,
                           "slots": UPLOAD_SLOTS, "memory_bound_mb": bound_mb, **env}
    statuses = outcome["upload_statuses"]
    growth = outcome["server"]["rss_growth_mb"]
    outcome["targets"] = [
        _p99_target(outcome["probe"]),
        _target(f"server peak RSS growth ≤ {UPLOAD_SLOTS} × {UPLOAD_MEMORY_FACTOR:g} × "
                f"{sizes.upload_bytes / 1e6:g} MB = {bound_mb:.0f} MB",
                f"+{growth:.0f} MB ({outcome['server']['rss_before_mib']:.0f} → "
                f"{outcome['server']['rss_peak_mib']:.0f} MiB); {statuses.get('202', 0)} "
                f"of {sizes.uploads} uploads 202, {statuses.get('503', 0)} 503; slowest "
                f"{outcome['upload_seconds']['max']:.1f} s", growth <= bound_mb)]
    return outcome


def make_text(folder: Path, size: int, name: str) -> Path:
    """`size` bytes of ASCII lines, written 1 MiB at a time."""
    line = b"A line of plain text in a large upload, one after another, as a log holds.\n"
    block = (line * (UPLOAD_CHUNK // len(line) + 1))[:UPLOAD_CHUNK]
    path = folder / name
    with path.open("wb") as out:
        for start in range(0, size, UPLOAD_CHUNK):
            out.write(block[:min(UPLOAD_CHUNK, size - start)])
    return path


async def _uploads(server: Service, prepared: dict[str, Any], sizes: Sizes,
                   texts: tuple[Path, Path]) -> dict[str, Any]:
    """One small upload first (what the first upload loads is not its memory), the quiet
    baseline, then the large uploads all at once."""
    port, call = server.port or 0, status_call(prepared)
    token = prepared["tokens"]["uploader"]
    fire = asyncio.Event()
    fire.set()
    outcomes: list[tuple[str, float]] = []
    await _upload(port, token, texts[0], WARM_UP_UPLOAD_BYTES, 0, fire, outcomes)
    if outcomes.pop()[0] != "202":
        raise RuntimeError("the warm-up upload was not accepted")
    quiet = await baseline(port, call, sizes.quiet_seconds)
    text = texts[1]
    fire.clear()
    with ServerWatch(server.pid) as watch:
        async with probing(port, call, UPLOAD_SECONDS + 60) as probe:
            sending = [asyncio.create_task(_upload(port, token, text, sizes.upload_bytes,
                                                   number, fire, outcomes))
                       for number in range(sizes.uploads)]
            fire.set()
            await asyncio.gather(*sending)
    return {"probe": probe_figures(quiet, probe.tally()), "server": watch.figures(),
            "upload_statuses": dict(Counter(s for s, _ in outcomes)),
            "upload_seconds": _spread_of([seconds for _, seconds in outcomes])}


async def _upload(port: int, token: str, text: Path, size: int, number: int,
                  fire: asyncio.Event, outcomes: list[tuple[str, float]]) -> None:
    """One multipart upload (field `file`), streamed from the file 1 MB at a time."""
    boundary = f"bench-hostile-{number:04d}"
    opening = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"large-{number}.txt\"\r\nContent-Type: text/plain\r\n\r\n").encode()
    closing = f"\r\n--{boundary}--\r\n".encode()
    await fire.wait()
    started = time.monotonic()
    try:
        async with asyncio.timeout(UPLOAD_SECONDS):
            connection = await Connection.open(port)
            try:
                connection.writer.write(connection.head(
                    "POST", UPLOAD_PATH, token, len(opening) + size + len(closing),
                    f"multipart/form-data; boundary={boundary}") + opening)
                with text.open("rb") as source:
                    for _ in range(size // UPLOAD_CHUNK + 1):
                        connection.writer.write(source.read(UPLOAD_CHUNK))
                        await connection.writer.drain()
                connection.writer.write(closing)
                answer = await connection.answer()
            finally:
                connection.close()
        outcomes.append((str(answer.status), time.monotonic() - started))
    except ERRORS as exc:
        outcomes.append((type(exc).__name__, time.monotonic() - started))


# -- 5. a flood from one tenant ---------------------------------------------------------

def case_flood(ctx: Run, sizes: Sizes, kind: str) -> dict[str, Any]:
    env = {"GENAI_JOBS_SHUTDOWN_GRACE_SECONDS": "2"}
    with served(kind, ctx.folder, env=env, prepare=lambda s: seed(s, ["flood-a", "tenant-b"],
                                                                   {})) as (_, server, prepared):
        outcome = asyncio.run(_flood(server, prepared, sizes))
    outcome["settings"] = {"flood_jobs": sizes.flood_jobs, "job_seconds": sizes.flood_job_seconds,
                           "connections": FLOOD_CONNECTIONS, "b_jobs": B_JOBS,
                           "workers": 1, "concurrency": 4}
    starts = outcome["b_start_seconds"]
    outcome["targets"] = [_target(
        f"tenant B's job starts ≤ {START_LIMIT_SECONDS:g} s after a flood of "
        f"{sizes.flood_jobs:,} from tenant A",
        f"slowest {max(starts, default=math.nan):.2f} s of {len(starts)} (each: "
        + ", ".join(f"{s:.2f}" for s in starts) + f" s); flood of "
        f"{outcome['flood_accepted']:,} in {outcome['flood_seconds']:.1f} s, "
        f"{outcome['a_queued_at_b']} of A's queued when B submitted",
        len(starts) == B_JOBS and max(starts) <= START_LIMIT_SECONDS)]
    return outcome


async def _flood(server: Service, prepared: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    port, tokens = server.port or 0, prepared["tokens"]
    job = {"jobType": "diagnostics.sleep", "payload": {"seconds": sizes.flood_job_seconds}}
    flood = Call("POST", f"{API}/jobs/", tokens["flood-a"], json.dumps(job).encode(), 202)
    statuses: Counter[str] = Counter()
    left = [sizes.flood_jobs]
    started = time.monotonic()
    await asyncio.gather(*(_submitter(port, flood, left, statuses)
                           for _ in range(FLOOD_CONNECTIONS)))
    flood_seconds = time.monotonic() - started
    queued = Call("GET", f"{API}/jobs/?status=INITIALIZED&limit=1", tokens["flood-a"])
    a_queued = json_of(await request_once(port, queued), 200, "list")["totalCount"]
    starts, client_seen = [], []
    for _ in range(B_JOBS):
        server_side, seen = await _b_job_starts(port, tokens["tenant-b"])
        starts.append(server_side)
        client_seen.append(seen)
    return {"flood_statuses": dict(statuses), "flood_accepted": statuses.get("202", 0),
            "flood_seconds": flood_seconds, "a_queued_at_b": a_queued,
            "b_start_seconds": starts, "b_seen_started_seconds": client_seen}


async def _submitter(port: int, call: Call, left: list[int], statuses: Counter[str]) -> None:
    """Submit while any of the flood is left to send (`left` is shared)."""
    connection = await Connection.open(port)
    try:
        while left[0] > 0:  # bounded: each pass takes one from the count
            left[0] -= 1
            try:
                async with asyncio.timeout(REQUEST_SECONDS):
                    statuses[str((await connection.request(call)).status)] += 1
            except ERRORS as exc:
                statuses[type(exc).__name__] += 1
                connection.close()
                connection = await Connection.open(port)
    finally:
        connection.close()


async def _b_job_starts(port: int, token: str) -> tuple[float, float]:
    """Submit one of B's jobs; (its `startedAt` - `created` by the server's clock, the
    seconds until this client saw it started)."""
    job = {"jobType": "diagnostics.sleep", "payload": {"seconds": 0}}
    submitted = time.monotonic()
    body = json_of(await request_once(port, Call("POST", f"{API}/jobs/", token,
                                                 json.dumps(job).encode(), 202)), 202, "submit")
    read = Call("GET", f"{API}/jobs/{body['statusId']}/", token)
    connection = await Connection.open(port)
    try:
        while time.monotonic() - submitted < START_WAIT_SECONDS:
            found = json_of(await connection.request(read), 200, "job")
            if found.get("startedAt"):
                return (_seconds_between(found["created"], found["startedAt"]),
                        time.monotonic() - submitted)
            await asyncio.sleep(POLL_EVERY)
    finally:
        connection.close()
    return math.inf, math.inf


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


# -- the cases together -----------------------------------------------------------------

CASE_FUNCTIONS: dict[str, Callable[[Run, Sizes, str], dict[str, Any]]] = {
    "slow": case_slow, "longpolls": case_longpolls, "pages": case_pages,
    "distinct_pages": case_distinct_pages,
    "uploads": case_uploads, "flood": case_flood}


def stores_for(case: str, backends: Sequence[str], every_store: bool = False) -> list[str]:
    wanted = [kind for kind in (harness.BACKENDS if every_store else CASE_STORES[case])
              if kind in backends]
    return wanted or list(backends[:1])


def run(ctx: Run, sizes: Sizes | None = None, only: Sequence[str] = CASES,
        every_store: bool = False) -> dict[str, Any]:
    """Section `hostile` of bench/run.py: every case on its stores, once each."""
    sizes = sizes or ctx.size(FULL, QUICK, smoke=SMOKE)
    raise_fd_limit(max(sizes.slow_sockets, sizes.long_pollers, sizes.big_pages) * 2 + 512)
    outcome: dict[str, Any] = {
        "settings": {**dataclasses.asdict(sizes), "probe_clients": PROBE_CLIENTS,
                     "probe_interval_ms": PROBE_INTERVAL * 1000},
        "measured": _when(), "cases": []}
    for case in only:
        for kind in stores_for(case, ctx.backends, every_store):
            outcome["cases"].append(_one_case(ctx, sizes, case, kind))
    outcome["measured"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return outcome


def _one_case(ctx: Run, sizes: Sizes, case: str, kind: str) -> dict[str, Any]:
    if ctx.out_of_time(f"hostile {case} on {kind}"):
        return {"case": case, "store": kind, "skipped": "time budget spent"}
    started = time.monotonic()
    try:
        found = CASE_FUNCTIONS[case](ctx, sizes, kind)
    except Exception as exc:  # recorded; the other cases still run
        found = {"failed": f"{type(exc).__name__}: {exc}"}
    found.update(case=case, store=kind, seconds=round(time.monotonic() - started, 1))
    if "failed" in found:
        ctx.log(f"  {case} {kind}: FAILED: {found['failed']}")
    for row in found.get("targets", []):
        ctx.log(f"  {case} {kind}: {_verdict(row['met'])}: {row['target']}: {row['figure']}")
    return found


def _when() -> dict[str, Any]:
    env = harness.environment()
    return {key: env[key] for key in ("date", "commit", "src_modified", "cores", "postgres",
                                      "sqlite", "python", "loadavg_at_start")}


# -- figures and the report ----------------------------------------------------------

def _spread_of(values: Sequence[float]) -> dict[str, float]:
    return {**harness.percentiles(values), "max": max(values, default=math.nan)}


def _requests(summary: dict[str, Any]) -> int:
    return int(summary["n"]) + int(summary["errors"])


def _target(target: str, figure: str, met: bool, ratio: float | None = None) -> dict[str, Any]:
    return {"target": target, "figure": figure, "met": bool(met),
            **({} if ratio is None else {"ratio": ratio})}


def _p99_target(probe: dict[str, Any], when: str = "") -> dict[str, Any]:
    quiet, loaded = probe["quiet"], probe["loaded"]
    return _target(
        f"others' status GET p99 ≤ {P99_RATIO_LIMIT:g}× quiet{when}",
        f"p99 {loaded['p99']:.2f} ms vs {quiet['p99']:.2f} ms quiet (p50 {loaded['p50']:.2f} "
        f"vs {quiet['p50']:.2f}); {loaded['errors']} errors in {_requests(loaded)}",
        probe["p99_ratio"] <= P99_RATIO_LIMIT and loaded["errors"] == 0, probe["p99_ratio"])


def _verdict(met: bool | None) -> str:
    return "met" if met else "**not met**"


CASE_TITLES = {"slow": "slow sockets", "longpolls": "long-polls on running jobs",
               "pages": "big pages", "distinct_pages": "distinct big pages",
               "uploads": "large uploads", "flood": "tenant flood"}


def markdown(section: dict[str, Any], command: str = "python -m bench.hostile",
             where: str = "bench/results/hostile/") -> str:
    """The report's section: how it was measured, then every target with its figure."""
    measured, settings = section.get("measured", {}), section.get("settings", {})
    rows = []
    for case in section.get("cases", []):
        title = f"{CASE_TITLES.get(case['case'], case['case'])}"
        if "failed" in case or "skipped" in case:
            rows.append([title, case["store"], case.get("failed") or case["skipped"],
                         "", "not measured"])
            continue
        for row in case["targets"]:
            ratio = f"{row['ratio']:.2f}×" if "ratio" in row else ""
            rows.append([title, case["store"], row["target"], row["figure"] +
                         (f" (**{ratio}**)" if ratio else ""), _verdict(row["met"])])
    table = "\n".join(["| case | store | target | figure | verdict |", "|---|---|---|---|---|",
                       *("| " + " | ".join(cells) + " |" for cells in rows)])
    notes = NOTES.read_text().strip() + "\n\n" if NOTES.exists() else ""
    return (f"{HEADING}\n\n{_intro(measured, settings, command, where)}\n\n{table}\n\n"
            f"{notes}{_details(section)}\n")


def _intro(measured: dict[str, Any], settings: dict[str, Any], command: str,
           where: str) -> str:
    return (
        f"`bench/hostile.py`, run as `{command}` on "
        f"{measured.get('date', '?')} at commit {measured.get('commit', '?')}"
        f"{' (src/ modified)' if measured.get('src_modified') else ''}, on "
        f"{measured.get('cores', '?')} cores shared with other work (load average "
        f"{' '.join(measured.get('loadavg_at_start', []))} at start, "
        f"{' '.join(measured.get('loadavg_at_end', []))} at the end); figures in "
        f"`{where}`. Each case runs a real `genai-jobs serve` on a fresh "
        "store and measures the same well-behaved clients on that same server quiet first "
        "(the baseline), then beside the hostile load: "
        f"{settings.get('probe_clients', PROBE_CLIENTS)} clients, each a status GET every "
        f"{settings.get('probe_interval_ms', PROBE_INTERVAL * 1000):g} ms (one opens a new "
        "connection for each request), for "
        f"{settings.get('quiet_seconds', '?')} s quiet and for the whole load. One run, "
        "one round per case: a p99 of a few thousand requests on a shared 2-core machine "
        "moves by tens of per cent between runs.")


def _details(section: dict[str, Any]) -> str:
    parts = []
    for case in section.get("cases", []):
        describe = DETAILS.get(case["case"])
        if describe is not None and "targets" in case:
            parts.append(f"**{CASE_TITLES[case['case']]}, {case['store']}** "
                         f"({case['seconds']:.0f} s): {describe(case)}")
    return "\n\n".join(parts)


def _probe_line(probe: dict[str, Any]) -> str:
    q, lo = probe["quiet"], probe["loaded"]
    return (f"status GET quiet p50/p99 {q['p50']:.2f}/{q['p99']:.2f} ms ({q['n']:,} requests), "
            f"loaded {lo['p50']:.2f}/{lo['p99']:.2f} ms, max {lo['max']:.1f} ms "
            f"({lo['n']:,} requests, {lo['errors']} errors"
            + (f": {lo['error_kinds']}" if lo["errors"] else "") + ")")


def _detail_slow(case: dict[str, Any]) -> str:
    lines = case["log_lines"]
    return (f"{case['settings']['sockets']:,} sockets each sent `GET /status/…` up to the "
            "middle of its `Authorization` header and went quiet, opened "
            f"{CONNECT_BATCH} at a time; {case['opened']:,} opened, {case['closed']:,} "
            f"closed by the server (answers: {case['answers']}){_slow_timing(case)}. "
            f"{_probe_line(case['probe'])}{_slowest(case.get('slowest_requests'))}. "
            f"Server CPU {case['server']['cpu_share']:.0%} of a core over "
            f"{case['server']['seconds']:.0f} s. Log lines: "
            + ("; ".join(f"`{_log_text(line)}`" for line in lines[:4]) or "none") + ".")


def _slow_timing(case: dict[str, Any]) -> str:
    if "last_quiet_after" not in case:  # not recorded before these were added
        return ""
    return (f"; the last went quiet {case['last_quiet_after']:.1f} s after the first opened, "
            f"the first was closed after {case['first_closed_after']:.1f} s")


def _slowest(pairs: list[tuple[float, float]] | None) -> str:
    if not pairs:
        return ""
    return ("; the slowest answers, ms at s after the first slow socket opened: "
            + ", ".join(f"{ms:.0f} at {at:.1f}" for at, ms in pairs[:6]))


def _log_text(line: str) -> str:
    return re.sub(r"^.*?(closed|refused)", r"\1", line).replace("|", "/")


def _detail_longpolls(case: dict[str, Any]) -> str:
    parts = []
    for name, phase in case["phases"].items():
        submit = phase["submit"]
        parts.append(
            f"{phase['long_polls']:,} on the {phase['route']} route: submit p50/p99 "
            f"{submit['p50']:.2f}/{submit['p99']:.2f} ms ({submit['n']} submits, "
            f"{submit['errors']} errors), server CPU {phase['server']['cpu_share']:.0%}, "
            f"{phase['long_poll_answers_per_second']:.0f} long-poll answers/s (wake-ups "
            f"{phase['wakeups_per_second']:.0f}/s, reads {phase['reads_per_second']:.0f}/s)"
            + ("" if name == "one" else _released(phase['waiters_gone_after'])))
    settings = case["settings"]
    return (f"{settings['jobs']} `diagnostics.sleep` jobs RUNNING (`serve --workers 1 "
            f"--concurrency {settings['jobs']}`), each reporting progress every second; each "
            f"client long-polls one of them with `waitSeconds={settings['wait_seconds']}` and "
            "sends its next long-poll as soon as one is answered; one client submits a "
            "`diagnostics.sleep` job every 20 ms for "
            f"{settings['window_seconds']:g} s once all are held. " + "; ".join(parts) + ".")


def _released(seconds: float) -> str:
    if seconds == seconds:
        return f", the server's waiters gone {seconds:.1f} s after their clients left"
    return ", the server's waiters still held after their clients left"


def _detail_pages(case: dict[str, Any]) -> str:
    settings, seconds = case["settings"], case["page_seconds"]
    offsets = (f"&offset=0` to `{settings['pages'] - 1}" if settings.get("distinct")
               else "")
    return (f"{settings['pages']} connections of one token each asked for "
            f"`GET /jobs/?limit={settings['limit']}{offsets}` at once "
            f"({settings['stored_jobs']:,} jobs stored, {case['page_bytes'] / 1e3:.0f} kB a "
            f"page; {settings['slots']} slots, "
            f"{settings['queue_seconds']:g} s queue): answers {case['page_statuses']}, page "
            f"time p50 {seconds['p50']:.2f} s, max {seconds['max']:.2f} s. "
            f"{_probe_line(case['probe'])}. Server CPU "
            f"{case['server']['cpu_share']:.0%} of a core.")


def _detail_uploads(case: dict[str, Any]) -> str:
    settings, seconds = case["settings"], case["upload_seconds"]
    return (f"{settings['uploads']} uploads of a {settings['bytes'] / 1e6:g} MB .txt at once "
            f"(multipart field `file`, streamed from disk; {settings['slots']} upload slots; "
            "GENAI_JOBS_DATASET_MAX_FILE_BYTES set to "
            f"{int(settings['GENAI_JOBS_DATASET_MAX_FILE_BYTES']) / 2**20:.0f} MiB), after "
            "one small upload (so that what the first upload loads counts in the RSS "
            f"before): answers {case['upload_statuses']}, upload time p50 "
            f"{seconds['p50']:.1f} s, max {seconds['max']:.1f} s. Server CPU "
            f"{case['server']['cpu_share']:.0%} of a core. {_probe_line(case['probe'])}.")


def _detail_flood(case: dict[str, Any]) -> str:
    settings = case["settings"]
    return (f"`serve` with its default worker ({settings['concurrency']} at a time); tenant A "
            f"submitted {settings['flood_jobs']:,} `diagnostics.sleep` jobs of "
            f"{settings['job_seconds']:g} s over {settings['connections']} connections "
            f"(answers {case['flood_statuses']}, {case['flood_seconds']:.1f} s), then tenant B "
            f"submitted {settings['b_jobs']} jobs one after another, each once the one before "
            "had started. Start = the server's `startedAt` - `created`; as this client saw it "
            "(polling every 20 ms): "
            + ", ".join(f"{s:.2f}" for s in case["b_seen_started_seconds"]) + " s.")


DETAILS: dict[str, Callable[[dict[str, Any]], str]] = {
    "slow": _detail_slow, "longpolls": _detail_longpolls, "pages": _detail_pages,
    "distinct_pages": _detail_pages,
    "uploads": _detail_uploads, "flood": _detail_flood}


def splice(report: Path, section: str) -> None:
    """Put `section` in the report in place of its earlier version, or else before the
    settings (or at the end)."""
    text = report.read_text() if report.exists() else ""
    start = text.find(HEADING)
    if start >= 0:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    elif (settings := text.find(SETTINGS_HEADING)) >= 0:
        text = text[:settings] + section.rstrip("\n") + "\n\n" + text[settings:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text)


# -- on its own -------------------------------------------------------------------------

def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--backends", nargs="+", choices=harness.BACKENDS,
                        default=list(harness.BACKENDS))
    parser.add_argument("--all-stores", action="store_true",
                        help="every case on every store (default: " + ", ".join(
                            f"{case} {'+'.join(kinds)}" for case, kinds in CASE_STORES.items())
                        + ")")
    for name, help_text in (("slow-sockets", "sockets that go quiet"),
                            ("long-pollers", "long-poll clients"),
                            ("big-pages", "concurrent big pages"),
                            ("uploads", "concurrent uploads"),
                            ("upload-bytes", "bytes of each upload"),
                            ("flood-jobs", "jobs in tenant A's flood")):
        parser.add_argument(f"--{name}", type=int, help=help_text)
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for results.json and results.md")
    parser.add_argument("--benchmarks", type=Path,
                        help="also put the section in this report (e.g. BENCHMARKS.md)")
    parser.add_argument("--render-only", action="store_true",
                        help="write results.md (and --benchmarks) again from results.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render_only:
        write(json.loads((args.out / "results.json").read_text()), args.out, args.benchmarks)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="genai-jobs-hostile-"))
    ctx = Run(folder=folder, quick=args.quick, smoke=args.smoke, rounds=1,
              backends=args.backends, peers=False)
    if "postgres" in ctx.backends and (why := harness.postgres_reachable()) is not None:
        print(f"PostgreSQL unreachable ({why}): measuring SQLite only", flush=True)
        ctx.backends = [kind for kind in ctx.backends if kind != "postgres"]
    sizes = dataclasses.replace(ctx.size(FULL, QUICK, smoke=SMOKE), **{
        key: value for key, value in (
            ("slow_sockets", args.slow_sockets), ("long_pollers", args.long_pollers),
            ("big_pages", args.big_pages), ("uploads", args.uploads),
            ("upload_bytes", args.upload_bytes), ("flood_jobs", args.flood_jobs))
        if value is not None})
    started = time.monotonic()
    try:
        section = run(ctx, sizes, args.only, args.all_stores)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    section["command"] = " ".join(["python -m bench.hostile", *(argv or sys.argv[1:])])
    section["seconds"] = round(time.monotonic() - started, 1)
    write(section, args.out, args.benchmarks)
    print(f"wrote {args.out}/results.json and results.md in {section['seconds']:.0f} s",
          flush=True)
    return 1 if any("failed" in case for case in section["cases"]) else 0


def write(section: dict[str, Any], out: Path, benchmarks: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(section, indent=1, default=str) + "\n")
    shown = out.resolve()
    where = (shown.relative_to(harness.REPO) if shown.is_relative_to(harness.REPO)
             else shown)
    text = markdown(section, section.get("command", "python -m bench.hostile"), f"{where}/")
    (out / "results.md").write_text(text)
    if benchmarks is not None:
        splice(benchmarks, text)


if __name__ == "__main__":
    sys.exit(main())
