"""psycopg 3 + psycopg_pool against asyncpg, on the store's two hot paths.

    .venv/bin/pip install asyncpg        # for the measurement only, not a project dependency
    .venv/bin/python -m bench.pg_drivers --out bench/results/pg-drivers
    .venv/bin/python -m bench.pg_drivers --rounds 1 --duration 1 --jobs 10000 --queue 500  # smoke

In-process, one asyncio loop (the stdlib one, as `serve` runs), PostgreSQL on
loopback. A scratch database `genai_jobs_bench_<random>` is created, migrated
by `PostgresStore.migrate()`, filled, and dropped at the end, whatever happens.

Phases (see docs/explanation/postgres-driver.md for what they mean):

- checkout: an empty pooled checkout (`pool.connection()` / `pool.acquire()`),
  one at a time: what the pool's `check` and asyncpg's release reset cost.
- status:   the status route's store work, token lookup then job lookup by
  primary key, each on its own checkout, rows made into domain records;
  1 and 32 concurrent tasks, req/s and p50/p99 latency.
- claim:    a queue of N jobs drained by 2 and 8 concurrent claimers, each
  claiming 1 job with the store's `_CLAIM` and completing it as
  `PostgresStore.complete` does (a transaction: SELECT ... FOR UPDATE, then
  the conditional UPDATE); jobs/s.
- restart:  the pool warmed to 10 connections, every backend of the pool
  terminated (what a database restart does to them), then 20 requests one at
  a time and 32 tasks x 3 requests: errors and latencies until healthy.
- plans:    the claim statement's custom and generic plans (what a prepared
  statement may switch to), EXPLAIN ANALYZE in a rolled-back transaction.

`--only KEY ...` runs just those setups (any key of `pg_clients.contenders`)
in every phase asked for. Contenders rotate order every round; each run opens
a fresh pool. Reported:
medians over rounds with min-max, and ratios to the shipped store
(`psycopg-store`) paired within the same round. Every loop is bounded in
count and in time, and the whole run by --max-minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
from bench.pg_clients import (
    A_CLAIM_SQL,
    A_COMPLETE_SQL,
    A_JOB_SQL,
    A_OVERDUE_SQL,
    A_TOKEN_SQL,
    CLAIM_SQL,
    COMPLETE_SQL,
    JOB_SQL,
    OVERDUE_SQL,
    TOKEN_SQL,
    Contender,
    contenders,
    dollar_params,
    status_request,
)
from psycopg import sql

from genai_jobs.store.postgres.store import PostgresStore
from genai_jobs.tokens import hash_secret, new_secret

log = logging.getLogger("bench.pg_drivers")

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN_TENANT = "tenant-7"
CLAIM_TYPE = "bench.claim"
RESULT = {"answer": 42, "text": "done"}
LEASE_SECONDS = 30.0
HZ = os.sysconf("SC_CLK_TCK")

PHASE_CONTENDERS = {
    "checkout": ["psycopg-store", "psycopg-nocheck", "psycopg-poll-drain", "asyncpg",
                 "asyncpg-noreset"],
    "status": ["psycopg-store", "psycopg-nocheck", "psycopg-poll-drain", "psycopg-noprepare",
               "asyncpg", "asyncpg-noreset", "asyncpg-nocache"],
    "claim": ["psycopg-store", "psycopg-nocheck", "psycopg-poll-drain", "psycopg-noprepare",
              "asyncpg", "asyncpg-noreset", "asyncpg-nocache"],
    "restart": ["psycopg-store", "psycopg-nocheck", "psycopg-poll", "psycopg-poll-drain",
                "asyncpg"],
}
BASELINE = "psycopg-store"
# Ratios worth reading, paired within each round: (numerator, denominator).
PAIRS = [
    ("asyncpg", "psycopg-store"),           # the switch, as each ships
    ("asyncpg", "psycopg-nocheck"),         # drivers with one pool round trip less each side
    ("asyncpg-noreset", "psycopg-nocheck"),  # both pools without their extra round trip
    ("asyncpg-noreset", "psycopg-store"),
    ("psycopg-nocheck", "psycopg-store"),   # what check_connection costs
    ("psycopg-poll-drain", "psycopg-store"),  # a check with no round trip
    ("asyncpg-noreset", "psycopg-poll-drain"),  # both without a round trip per checkout
    ("psycopg-noprepare", "psycopg-store"),  # psycopg's prepared statements
    ("asyncpg-nocache", "asyncpg"),         # asyncpg's statement cache
    ("asyncpg-noreset", "asyncpg"),         # asyncpg's reset query on release
]


# --- database -----------------------------------------------------------------
def with_dbname(url: str, name: str) -> str:
    head, _, tail = url.partition("://")
    location, _, rest = tail.partition("/")
    query = rest.partition("?")[2]
    return f"{head}://{location}/{name}" + (f"?{query}" if query else "")


def create_database(admin_url: str) -> tuple[str, str]:
    name = f"genai_jobs_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, with_dbname(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop it, waiting up to 3 minutes if the shared server is restarting just now."""
    for attempt in range(36):
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
            return
        except psycopg.OperationalError as exc:
            if attempt == 35:
                raise
            log.warning("cannot drop %s yet: %s", name, str(exc).splitlines()[0])
            time.sleep(5)


@dataclasses.dataclass
class Data:
    secret_hash: str
    job_ids: list[uuid.UUID]


async def build(url: str, jobs: int) -> Data:
    """The real schema (by the store's own migrate()), `jobs` finished jobs, 100 tokens."""
    store = PostgresStore(url)
    await store._pool.open(wait=True, timeout=10)
    try:
        applied = await store.migrate()
        log.info("migrations applied: %s", applied)
        secret_hash = hash_secret(new_secret())
        await store.create_token(TOKEN_TENANT, False, secret_hash)
        for n in range(99):
            await store.create_token(f"tenant-{n % 50}", n == 0, hash_secret(new_secret()))
    finally:
        await store._pool.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t0 = time.monotonic()
        async with conn.transaction():
            # replica role: the NOTIFY triggers stay quiet for the bulk load only
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "INSERT INTO jobs (id, tenant, job_type, payload, description, status, message,"
                " result, progress, progress_message, attempts, max_attempts, priority,"
                " created_at, updated_at, started_at, finished_at, expires_at, run_after)"
                " SELECT gen_random_uuid(), 'tenant-' || (g %% 50), 'diagnostics.sleep',"
                " json_build_object('seconds', g %% 7, 'prompt', repeat('x', 40 + g %% 200)),"
                " 'job ' || g,"
                " (ARRAY['COMPLETED','COMPLETED','COMPLETED','COMPLETED','COMPLETED',"
                "        'COMPLETED','COMPLETED','COMPLETED','ERROR','ABORTED'])[1 + g %% 10],"
                " '', json_build_object('answer', g, 'text', repeat('y', 60 + g %% 300)),"
                " 1.0, '', 1, 3, g %% 3, now() - g * interval '1 second',"
                " now() - g * interval '1 second' + interval '2 seconds',"
                " now() - g * interval '1 second' + interval '1 second',"
                " now() - g * interval '1 second' + interval '2 seconds',"
                " now() - g * interval '1 second' + interval '1 day',"
                " now() - g * interval '1 second'"
                " FROM generate_series(1, %s) AS g", (jobs,))
        await conn.execute("VACUUM (ANALYZE) jobs")
        await conn.execute("VACUUM (ANALYZE) tokens")
        rows = await (await conn.execute(
            "SELECT id FROM jobs WHERE tenant = %s ORDER BY md5(id::text) LIMIT 1000",
            (TOKEN_TENANT,))).fetchall()
        log.info("loaded %d jobs in %.1f s", jobs, time.monotonic() - t0)
    return Data(secret_hash, [row[0] for row in rows])


async def reset_queue(url: str, size: int) -> None:
    """`size` fresh queued jobs of CLAIM_TYPE, the last queue's rows gone, statistics fresh."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("DELETE FROM jobs WHERE job_type = %s", (CLAIM_TYPE,))
            await conn.execute(
                "INSERT INTO jobs (id, tenant, job_type, payload, description, status,"
                " max_attempts, priority, created_at, updated_at, expires_at, run_after)"
                " SELECT gen_random_uuid(), 'claim', %s, json_build_object('n', g), '',"
                " 'INITIALIZED', 3, 0, now() - (%s - g) * interval '1 millisecond', now(),"
                " now() + interval '1 day', now() - interval '1 second'"
                " FROM generate_series(1, %s) AS g", (CLAIM_TYPE, size, size))
        await conn.execute("VACUUM (ANALYZE) jobs")


# --- sampling -----------------------------------------------------------------
def _proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return None


def _machine() -> tuple[float, float]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) / HZ, idle / HZ


class Admin:
    """The benchmark's own connection for bookkeeping. The server is shared: when
    someone restarts it, this reconnects (waiting up to 3 minutes for it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def query(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        for attempt in range(2):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = await self._connect()
                return await (await self.conn.execute(query, params)).fetchall()
            except psycopg.OperationalError:
                if attempt:
                    raise
                with contextlib.suppress(Exception):
                    await self.conn.close()  # type: ignore[union-attr]
                self.conn = None
        raise AssertionError("unreachable")

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        give_up = time.monotonic() + 180
        while True:
            try:
                return await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=5,
                    application_name="pgbench_admin")
            except psycopg.OperationalError:
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(1)

    async def started(self) -> str:
        """When the server last started: a change means someone restarted it."""
        return str((await self.query("SELECT pg_postmaster_start_time()"))[0][0])

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class Sample:
    """Client CPU, the pool's backends' CPU and the whole machine's, over a window."""

    def __init__(self, admin: Admin, app_name: str) -> None:
        self.admin, self.app_name = admin, app_name

    async def _pids(self) -> list[int]:
        rows = await self.admin.query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app_name,))
        return [row[0] for row in rows]

    async def start(self) -> None:
        self.backend0 = {pid: _proc_cpu(pid) or 0.0 for pid in await self._pids()}
        self.total0, self.idle0 = _machine()
        self.proc0 = time.process_time()
        self.wall0 = time.perf_counter()

    async def stop(self) -> dict[str, float]:
        proc = time.process_time() - self.proc0
        wall = time.perf_counter() - self.wall0
        total, idle = _machine()
        backend = 0.0
        for pid in await self._pids():
            now = _proc_cpu(pid)
            if now is not None:
                backend += now - self.backend0.get(pid, 0.0)
        busy = (total - self.total0) - (idle - self.idle0)
        ncpu = os.cpu_count() or 1
        return {"client_cpu_s": proc, "backend_cpu_s": backend, "wall_s": wall,
                "machine_busy": busy / max(wall * ncpu, 1e-9),
                "others_busy": max(busy - proc - backend, 0.0) / max(wall * ncpu, 1e-9)}


# --- load ---------------------------------------------------------------------
async def run_load(fn: Callable[[], Awaitable[Any]], concurrency: int, duration: float,
                   cap: int) -> tuple[int, list[int], list[str]]:
    """`concurrency` tasks calling fn until `duration` seconds or `cap` calls in all."""
    latencies: list[int] = []
    errors: list[str] = []
    started = 0
    end = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal started
        while time.perf_counter() < end and started < cap:
            started += 1
            t0 = time.perf_counter_ns()
            try:
                await fn()
            except Exception as exc:  # recorded, not raised: a run reports its errors
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                if len(errors) > 1000:
                    return
            else:
                latencies.append(time.perf_counter_ns() - t0)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                           duration + 60)
    return len(latencies), latencies, errors


def pct(latencies_ns: list[int], q: float) -> float:
    if not latencies_ns:
        return float("nan")
    ordered = sorted(latencies_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


async def warm_pool(c: Contender, tasks: int, seconds: float) -> None:
    async def hold() -> None:
        await c.checkout()
        await asyncio.sleep(0)
    await run_load(hold, tasks, seconds, 100_000)


# --- phases -------------------------------------------------------------------
class Runner:
    def __init__(self, args: argparse.Namespace, url: str, data: Data, admin: Admin) -> None:
        self.args, self.url, self.data, self.admin = args, url, data, admin
        self.factories = contenders(url)
        self.rows: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.disturbed: list[dict[str, Any]] = []
        self.deadline = time.monotonic() + args.max_minutes * 60
        self.rows_file = Path(args.out) / "rows.jsonl" if args.out else None
        if self.rows_file is not None:
            self.rows_file.parent.mkdir(parents=True, exist_ok=True)
            self.rows_file.write_text("")

    async def unit(self, label: str, fn: Callable[[], Awaitable[None]],
                   errors_disturb: bool = True) -> None:
        """Run one measurement; redo it (twice at most) if the shared server was
        restarted meanwhile or the store reported errors, so no number mixes in one."""
        for attempt in range(3):
            self.pending = []
            reason = ""
            before = await self.admin.started()
            try:
                await asyncio.wait_for(fn(), 600)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:150]}"
            after = await self.admin.started()
            if before != after:
                reason = f"server restarted at {after} ({reason or 'no error seen'})"
            elif not reason and errors_disturb and any(r.get("errors") for r in self.pending):
                reason = "errors during the run: " + "; ".join(
                    str(r.get("errors_sample")) for r in self.pending if r.get("errors"))[:300]
            if not reason:
                for row in self.pending:
                    self._commit(row)
                return
            log.warning("%s disturbed (attempt %d): %s", label, attempt + 1, reason)
            self.disturbed.append({"unit": label, "attempt": attempt + 1, "reason": reason})
            await asyncio.sleep(3)
            if before != after:
                await warm_server(self.admin)
        log.error("%s: gave up after 3 attempts", label)

    def _commit(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.rows_file is not None:
            with self.rows_file.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def order(self, phase: str, rnd: int) -> list[str]:
        # --only names the setups to run (any key of pg_clients.contenders), in its order
        keys = [k for k in self.args.only if k in self.factories] if self.args.only \
            else list(PHASE_CONTENDERS[phase])
        shift = rnd % len(keys)
        return keys[shift:] + keys[:shift]

    def record(self, **row: Any) -> None:
        self.pending.append(row)
        brief = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                 if k not in ("errors_sample", "events")}
        print(json.dumps(brief), flush=True)

    async def checkout_phase(self, rnd: int) -> None:
        for key in self.order("checkout", rnd):
            await self.unit(f"checkout/{key}/r{rnd}", lambda key=key: self._checkout(key, rnd))

    async def _checkout(self, key: str, rnd: int) -> None:
        c = self.factories[key]()
        await c.open()
        try:
            await warm_pool(c, 1, self.args.warmup)
            sample = Sample(self.admin, c.app_name)
            await sample.start()
            n, lat, errors = await run_load(c.checkout, 1, self.args.duration, 1_000_000)
            s = await sample.stop()
        finally:
            await close_quietly(c)
        self.record(phase="checkout", round=rnd, contender=key, param=1, n=n,
                    rate=n / s["wall_s"], p50_ms=pct(lat, 0.5), p99_ms=pct(lat, 0.99),
                    client_us=1e6 * s["client_cpu_s"] / max(n, 1),
                    backend_us=1e6 * s["backend_cpu_s"] / max(n, 1),
                    machine_busy=s["machine_busy"], others_busy=s["others_busy"],
                    errors=len(errors), errors_sample=errors[:3])

    async def status_phase(self, rnd: int) -> None:
        ids = itertools.cycle(self.data.job_ids)
        concurrencies = list(self.args.concurrency)
        if rnd % 2:
            concurrencies.reverse()
        for key in self.order("status", rnd):
            await self.unit(f"status/{key}/r{rnd}",
                            lambda key=key: self._status(key, rnd, ids, concurrencies))

    async def _status(self, key: str, rnd: int, ids: Any, concurrencies: list[int]) -> None:
        secret_hash = self.data.secret_hash
        c = self.factories[key]()
        await c.open()
        try:
            def request() -> Awaitable[Any]:
                return status_request(c, secret_hash, next(ids))
            for conc in concurrencies:
                await run_load(request, conc, self.args.warmup, 1_000_000)
                sample = Sample(self.admin, c.app_name)
                await sample.start()
                n, lat, errors = await run_load(request, conc, self.args.duration, 1_000_000)
                s = await sample.stop()
                self.record(phase="status", round=rnd, contender=key, param=conc, n=n,
                            rate=n / s["wall_s"], p50_ms=pct(lat, 0.5), p99_ms=pct(lat, 0.99),
                            client_us=1e6 * s["client_cpu_s"] / max(n, 1),
                            backend_us=1e6 * s["backend_cpu_s"] / max(n, 1),
                            machine_busy=s["machine_busy"], others_busy=s["others_busy"],
                            connections=c.connections(),
                            errors=len(errors), errors_sample=errors[:3])
        finally:
            await close_quietly(c)

    async def claim_phase(self, rnd: int) -> None:
        claimers = list(self.args.claimers)
        if rnd % 2:
            claimers.reverse()
        for key in self.order("claim", rnd):
            for n_claimers in claimers:
                await self.unit(f"claim/{key}/{n_claimers}/r{rnd}",
                                lambda key=key, n=n_claimers: self._claim(key, rnd, n))

    async def _claim(self, key: str, rnd: int, n_claimers: int) -> None:
        await reset_queue(self.url, self.args.queue)
        c = self.factories[key]()
        await c.open()
        try:
            await warm_pool(c, n_claimers, self.args.warmup)
            await self._drain(c, key, rnd, n_claimers)
        finally:
            await close_quietly(c)

    async def _drain(self, c: Contender, key: str, rnd: int, n_claimers: int) -> None:
        cycle_ns: list[int] = []
        errors: list[str] = []
        done = 0
        cap = self.args.queue + 10
        end = time.perf_counter() + self.args.drain_timeout

        async def claimer(number: int) -> None:
            nonlocal done
            owner = f"bench-claimer-{number}"
            while done < cap and time.perf_counter() < end:
                t0 = time.perf_counter_ns()
                try:
                    leases = await c.claim(owner, [CLAIM_TYPE], LEASE_SECONDS, 1)
                    if not leases:
                        return  # the queue is empty (or its last rows are being taken)
                    await c.complete(leases[0], RESULT)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                    if len(errors) > 100:
                        return
                    continue
                done += 1
                cycle_ns.append(time.perf_counter_ns() - t0)

        sample = Sample(self.admin, c.app_name)
        await sample.start()
        await asyncio.wait_for(asyncio.gather(*(claimer(i) for i in range(n_claimers))),
                               self.args.drain_timeout + 30)
        s = await sample.stop()
        row = (await self.admin.query(
            "SELECT count(*) FILTER (WHERE status = 'COMPLETED'),"
            " count(*) FILTER (WHERE status <> 'COMPLETED'), max(attempts)"
            " FROM jobs WHERE job_type = %s", (CLAIM_TYPE,)))[0]
        self.record(phase="claim", round=rnd, contender=key, param=n_claimers, n=done,
                    rate=done / s["wall_s"], p50_ms=pct(cycle_ns, 0.5),
                    p99_ms=pct(cycle_ns, 0.99),
                    client_us=1e6 * s["client_cpu_s"] / max(done, 1),
                    backend_us=1e6 * s["backend_cpu_s"] / max(done, 1),
                    machine_busy=s["machine_busy"], others_busy=s["others_busy"],
                    completed=row[0], not_completed=row[1], max_attempts=row[2],
                    errors=len(errors), errors_sample=errors[:3])
        if row[0] != self.args.queue or row[1] != 0 or row[2] != 1:
            raise RuntimeError(f"{key}: the queue did not drain cleanly: {row}")

    async def restart_phase(self, rnd: int) -> None:
        ids = itertools.cycle(self.data.job_ids)
        for key in self.order("restart", rnd):
            for scenario in ("sequential", "concurrent"):
                await self.unit(f"restart/{key}/{scenario}/r{rnd}",
                                lambda key=key, sc=scenario: self._restart(key, rnd, sc, ids),
                                errors_disturb=False)

    async def _restart(self, key: str, rnd: int, scenario: str, ids: Any) -> None:
        c = self.factories[key]()
        await c.open()
        try:
            await self._restart_once(c, key, rnd, scenario, ids)
        finally:
            await close_quietly(c)

    async def _restart_once(self, c: Contender, key: str, rnd: int, scenario: str,
                            ids: itertools.cycle[uuid.UUID]) -> None:
        secret_hash = self.data.secret_hash

        async def request() -> None:
            await status_request(c, secret_hash, next(ids))

        await run_load(request, 32, 1.0, 100_000)  # grows the pool to its maximum
        await asyncio.sleep(0.2)
        pool_before = c.connections()
        killed = (await self.admin.query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s", (c.app_name,)))[0][0]
        await asyncio.sleep(0.2)  # the FATAL messages and EOFs arrive
        events: list[tuple[float, float, str]] = []  # (start s, latency ms, outcome)
        t_start = time.perf_counter()

        async def one() -> None:
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(request(), 30)
                outcome = "ok"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
            events.append((t0 - t_start, 1000 * (time.perf_counter() - t0), outcome))

        if scenario == "sequential":
            for _ in range(20):
                if time.perf_counter() - t_start > 90:
                    break
                await one()
        else:
            async def task() -> None:
                for _ in range(3):
                    await one()
            await asyncio.wait_for(asyncio.gather(*(task() for _ in range(32))), 150)
        wall = time.perf_counter() - t_start
        failures = [e for e in events if e[2] != "ok"]
        oks = [e for e in events if e[2] == "ok"]
        kinds: dict[str, int] = {}
        for e in failures:
            kinds[e[2]] = kinds.get(e[2], 0) + 1
        self.record(phase="restart", round=rnd, contender=key, param=scenario,
                    pool_before=pool_before, killed=killed, requests=len(events),
                    failed=len(failures), error_kinds=kinds,
                    first_latency_ms=events[0][1] if events else float("nan"),
                    max_latency_ms=max((e[1] for e in events), default=float("nan")),
                    max_ok_latency_ms=max((e[1] for e in oks), default=float("nan")),
                    wall_s=wall, connections_after=c.connections(),
                    events=[(round(a, 3), round(b, 2), o) for a, b, o in events])

    async def plans_phase(self) -> None:
        await reset_queue(self.url, self.args.queue)
        out: dict[str, Any] = {}
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            for mode in ("force_custom_plan", "force_generic_plan", "auto"):
                async with conn.transaction(force_rollback=True):
                    await conn.execute(sql.SQL("SET LOCAL plan_cache_mode = {}").format(
                        sql.Literal(mode)))
                    await conn.execute(
                        "PREPARE bench_claim(text[], integer, text, double precision) AS "
                        + A_CLAIM_SQL)
                    lines: list[str] = []
                    # auto: the first 5 executions are custom; the 6th may go generic.
                    for attempt in range(7 if mode == "auto" else 1):
                        rows = await (await conn.execute(
                            "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) EXECUTE bench_claim"
                            f"(ARRAY['{CLAIM_TYPE}'], 1, 'plans', 30.0)")).fetchall()
                        lines = [row[0] for row in rows]
                        if mode == "auto":
                            out[f"auto#{attempt + 1}"] = _plan_summary(lines)
                    out[mode] = lines
                    await conn.execute("DEALLOCATE bench_claim")
        self.record(phase="plans", round=0, contender="-", param="claim", plans=out)


async def close_quietly(c: Contender) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(c.close(), 15)


async def warm_server(admin: Admin) -> None:
    """After someone restarted the server: its caches are cold; read the tables once."""
    with contextlib.suppress(Exception):
        await admin.query("SELECT count(*), sum(length(result::text)) FROM jobs")
        await admin.query("SELECT count(*) FROM tokens")


def _plan_summary(lines: list[str]) -> str:
    scans = [line.strip() for line in lines if "Scan" in line]
    times = [line.strip() for line in lines if line.strip().startswith(("Planning", "Execution"))]
    return " | ".join(scans[:2] + times)


# --- fidelity -----------------------------------------------------------------
async def fidelity_check(url: str, data: Data) -> dict[str, Any]:
    """The asyncpg port sends what the store sends and returns equal records."""
    sent: list[str] = []
    original = psycopg.AsyncConnection.execute

    async def spy(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        text = query if isinstance(query, str) else (
            query.decode() if isinstance(query, bytes) else query.as_string(self))
        if text:
            sent.append(text)
        return await original(self, query, params, **kw)

    factories = contenders(url)
    store_c, apg = factories["psycopg-store"](), factories["asyncpg"]()
    await reset_queue(url, 2)
    await store_c.open()
    await apg.open()
    try:
        psycopg.AsyncConnection.execute = spy  # type: ignore[method-assign]
        try:
            job_p = await status_request(store_c, data.secret_hash, data.job_ids[0])
            lease_p = (await store_c.claim("fidelity", [CLAIM_TYPE], LEASE_SECONDS, 1))[0]
            done_p = await store_c.complete(lease_p, RESULT)
        finally:
            psycopg.AsyncConnection.execute = original  # type: ignore[method-assign]
        job_a = await status_request(apg, data.secret_hash, data.job_ids[0])
        lease_a = (await apg.claim("fidelity", [CLAIM_TYPE], LEASE_SECONDS, 1))[0]
        done_a = await apg.complete(lease_a, RESULT)
        token_p = await store_c.find_token(data.secret_hash)
        token_a = await apg.find_token(data.secret_hash)
    finally:
        await store_c.close()
        await apg.close()
    expected = [TOKEN_SQL, JOB_SQL, CLAIM_SQL, OVERDUE_SQL, COMPLETE_SQL]
    assert sent == expected, f"the store sent {sent!r}"
    assert [dollar_params(q) for q in sent] == [A_TOKEN_SQL, A_JOB_SQL, A_CLAIM_SQL,
                                               A_OVERDUE_SQL, A_COMPLETE_SQL]
    assert dataclasses.asdict(job_p) == dataclasses.asdict(job_a), (job_p, job_a)
    assert token_p == token_a, (token_p, token_a)

    def comparable(job: Any) -> dict[str, Any]:
        skip = {"id", "payload", "created_at", "updated_at", "started_at", "finished_at",
                "expires_at", "run_after", "lease_id", "lease_owner", "lease_expires_at"}
        return {k: v for k, v in dataclasses.asdict(job).items() if k not in skip}

    assert comparable(done_p) == comparable(done_a), (done_p, done_a)
    assert comparable(lease_p.job) == comparable(lease_a.job)
    types = {name: type(getattr(job_a, name)).__module__ + "." + type(getattr(job_a, name)).__name__
             for name in ("id", "created_at", "payload", "result")}
    return {"statements": len(sent), "asyncpg_value_types": types,
            "equal_records": True}


# --- summary ------------------------------------------------------------------
METRICS = ["rate", "p50_ms", "p99_ms", "client_us", "backend_us"]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase in ("checkout", "status", "claim"):
        prow = [r for r in rows if r["phase"] == phase]
        groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        for r in prow:
            groups.setdefault((r["contender"], r["param"]), []).append(r)
        table = []
        for (key, param), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            entry: dict[str, Any] = {"contender": key, "param": param, "rounds": len(rs),
                                     "errors": sum(r["errors"] for r in rs),
                                     "others_busy": statistics.median(
                                         r["others_busy"] for r in rs)}
            for m in METRICS:
                vals = [r[m] for r in rs]
                entry[m] = {"median": statistics.median(vals), "min": min(vals),
                            "max": max(vals)}
            table.append(entry)
        pairs = []
        for num, den in PAIRS:
            for param in sorted({r["param"] for r in prow}):
                ratios = {m: [] for m in ("rate", "client_us", "backend_us", "p50_ms")}
                for rnd in sorted({r["round"] for r in prow}):
                    a = [r for r in prow if r["contender"] == num and r["param"] == param
                         and r["round"] == rnd]
                    b = [r for r in prow if r["contender"] == den and r["param"] == param
                         and r["round"] == rnd]
                    if a and b:
                        for m in ratios:
                            if b[0][m]:
                                ratios[m].append(a[0][m] / b[0][m])
                if ratios["rate"]:
                    pairs.append({"pair": f"{num} / {den}", "param": param, **{
                        m: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                        for m, v in ratios.items() if v}})
        out[phase] = {"table": table, "pairs": pairs}
    return out


def markdown(meta: dict[str, Any], summary: dict[str, Any],
             rows: list[dict[str, Any]]) -> str:
    lines = [f"# PostgreSQL drivers: {meta['started']}", "",
             "Medians over rounds (min-max). Ratios are paired within each round. "
             "`rate` is req/s (status), checkouts/s (checkout) or jobs/s (claim); "
             "CPU is per request/checkout/job: client = this Python process, "
             "backend = the pool's PostgreSQL backends.", ""]
    names = {"checkout": "Checkout (empty, one at a time)",
             "status": "Status lookup (token + job, param = concurrent tasks)",
             "claim": "Claim loop (claim 1 + complete, param = claimers)"}
    for phase, title in names.items():
        if phase not in summary or not summary[phase]["table"]:
            continue
        base = {e["param"]: e for e in summary[phase]["table"] if e["contender"] == BASELINE}
        lines += [f"## {title}", "",
                  "| contender | param | rate | min-max | vs store (paired) | p50 ms | p99 ms |"
                  " client CPU us | backend CPU us | others' CPU | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        pair_of = {(p["pair"], p["param"]): p for p in summary[phase]["pairs"]}
        for e in summary[phase]["table"]:
            p = pair_of.get((f"{e['contender']} / {BASELINE}", e["param"]))
            ratio = (f"{p['rate']['median']:.2f} ({p['rate']['min']:.2f}-{p['rate']['max']:.2f})"
                     if p else ("1.00" if e["param"] in base and e["contender"] == BASELINE
                                else "-"))
            r = e["rate"]
            lines.append(
                f"| {e['contender']} | {e['param']} | {r['median']:.0f} | "
                f"{r['min']:.0f}-{r['max']:.0f} | {ratio} | {e['p50_ms']['median']:.2f} | "
                f"{e['p99_ms']['median']:.2f} | {e['client_us']['median']:.0f} | "
                f"{e['backend_us']['median']:.0f} | {100 * e['others_busy']:.0f}% | "
                f"{e['errors']} |")
        lines += ["", "| pair | param | rate ratio | client CPU ratio | backend CPU ratio |"
                      " p50 ratio |", "|---|---:|---:|---:|---:|---:|"]
        for p in summary[phase]["pairs"]:
            def fmt(m: str, p: dict[str, Any] = p) -> str:
                if m not in p:
                    return "-"
                return f"{p[m]['median']:.2f} ({p[m]['min']:.2f}-{p[m]['max']:.2f})"
            lines.append(f"| {p['pair']} | {p['param']} | {fmt('rate')} | {fmt('client_us')} |"
                         f" {fmt('backend_us')} | {fmt('p50_ms')} |")
        lines.append("")
    restart = [r for r in rows if r["phase"] == "restart"]
    if restart:
        lines += ["## Restart (every backend of a warm pool terminated)", "",
                  "| contender | scenario | round | pool | requests | failed | first ms |"
                  " max ms | wall s | errors |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in sorted(restart, key=lambda r: (r["contender"], r["param"], r["round"])):
            kinds = "; ".join(f"{n}x {k}" for k, n in r["error_kinds"].items()) or "-"
            lines.append(f"| {r['contender']} | {r['param']} | {r['round']} | "
                         f"{r['pool_before']} | {r['requests']} | {r['failed']} | "
                         f"{r['first_latency_ms']:.0f} | {r['max_latency_ms']:.0f} | "
                         f"{r['wall_s']:.2f} | {kinds} |")
        lines.append("")
    plans = [r for r in rows if r["phase"] == "plans"]
    if plans:
        lines += ["## Claim statement plans (EXPLAIN ANALYZE, rolled back)", ""]
        for mode, text in plans[0]["plans"].items():
            if isinstance(text, str):
                lines.append(f"- {mode}: {text}")
        for mode in ("force_custom_plan", "force_generic_plan"):
            lines += ["", f"{mode}:", "", "```", *plans[0]["plans"].get(mode, []), "```"]
        lines.append("")
    if meta.get("disturbed"):
        lines += ["## Runs redone", "",
                  "Redone because the shared server was restarted by someone else meanwhile,"
                  " or the store reported errors:", ""]
        lines += [f"- {d['unit']} (attempt {d['attempt']}): {d['reason']}"
                  for d in meta["disturbed"]]
        lines.append("")
    lines += ["## Versions", "", "```", json.dumps(meta, indent=2, default=str), "```", ""]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------
def versions(server: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip()
    except OSError:
        commit = "?"
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": sys.version.split()[0], "psycopg": psycopg.__version__,
            "psycopg_impl": psycopg.pq.__impl__, "libpq": psycopg.pq.version(),
            "psycopg_pool": psycopg_pool.__version__, "asyncpg": asyncpg.__version__,
            "server": server, "loop": "asyncio (stdlib)", "commit": commit,
            "platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu,
            "loadavg_at_start": load}


async def amain(args: argparse.Namespace) -> int:
    name, url = create_database(args.admin_url)
    log.info("scratch database %s", name)
    meta: dict[str, Any] = {}
    runner: Runner | None = None
    admin = Admin(url)
    try:
        data = await build(url, args.jobs)
        server = (await admin.query("SHOW server_version"))[0][0]
        meta = versions(str(server))
        meta["args"] = {k: v for k, v in vars(args).items() if k != "admin_url"}
        meta["fidelity"] = await fidelity_check(url, data)
        log.info("fidelity: %s", meta["fidelity"])
        runner = Runner(args, url, data, admin)
        phases = {"checkout": runner.checkout_phase, "status": runner.status_phase,
                  "claim": runner.claim_phase, "restart": runner.restart_phase}
        for rnd in range(args.rounds):
            for phase in args.phases:
                if phase not in phases or (phase == "restart" and rnd >= args.restart_rounds):
                    continue
                if runner.out_of_time():
                    log.warning("out of time (--max-minutes): stopping")
                    break
                log.info("round %d: %s", rnd, phase)
                await phases[phase](rnd)
        if "plans" in args.phases and not runner.out_of_time():
            await runner.unit("plans", runner.plans_phase)
    finally:
        await admin.close()
        drop_database(args.admin_url, name)
        log.info("dropped %s", name)
        if runner is not None:
            meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            meta["disturbed"] = runner.disturbed
            report(args.out, meta, runner.rows)
    return 0


def report(out_dir: str | None, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    summary = summarise(rows)
    text = markdown(meta, summary, rows)
    print(text)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(
            {"meta": meta, "summary": summary, "rows": rows}, indent=1, default=str))
        (out / "results.md").write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=os.environ.get(
        "GENAI_JOBS_TEST_DATABASE_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--restart-rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queue", type=int, default=5_000)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--claimers", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--phases", nargs="+",
                        default=["checkout", "status", "claim", "restart", "plans"])
    parser.add_argument("--only", nargs="*", help="contender keys to run (default: all)")
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--out", help="directory for results.json and results.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("psycopg", "psycopg.pool", "asyncpg", "genai_jobs"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
