"""What fair claiming costs: a claim against the FIFO claim it replaced, per store.

    .venv/bin/python -m bench.fair_claims [--jobs 2000] [--rounds 3]

Fair claims (store/*/tenants.py) walk the tenants with queued jobs and take each
one's head, where the FIFO claim took the first row of one index. For each store
and each queue shape (all jobs from 1 tenant; the same jobs spread over 50
tenants), on a fresh scratch store per round, `--jobs` jobs are queued, then
claimed one at a time, half by the FIFO statement (`ORDER BY priority DESC,
created_at`, on the index the store used to have), given back, then half by the
store's fair statements, each sent straight on one connection (no pool, no
write thread: the statement's own cost). The figure is the median time of a
claim; both see the same queue in the same round. Ratios fair/FIFO are what to read; the absolute
times depend on the machine. Every loop is bounded by the job count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from bench.harness import BACKENDS, noop_job, opened, postgres_reachable, scratch_store
from psycopg.rows import dict_row

from genai_jobs.store import sqlite_path
from genai_jobs.store.postgres import tenants as pg_tenants
from genai_jobs.store.sqlite import tenants as sqlite_tenants

RESULTS = Path(__file__).resolve().parent / "results" / "fair-claims"
SHAPES = {"1 tenant": 1, "50 tenants": 50}
TYPE = "bench.noop"

_FIFO_SQLITE = (
    "UPDATE jobs SET status = 'RUNNING', lease_id = 'fifo', lease_owner = 'fifo'"
    " WHERE id = (SELECT id FROM jobs WHERE status = 'INITIALIZED' AND run_after <= ?"
    " AND expires_at > ? AND job_type = ? ORDER BY priority DESC, created_at LIMIT 1)"
    " RETURNING id")
_FIFO_POSTGRES = (
    "WITH picked AS (SELECT id FROM jobs WHERE status = 'INITIALIZED' AND run_after <= now()"
    " AND expires_at > now() AND job_type = %s ORDER BY priority DESC, created_at"
    " LIMIT 1 FOR UPDATE SKIP LOCKED) UPDATE jobs SET status = 'RUNNING',"
    " lease_id = gen_random_uuid(), lease_owner = 'fifo' FROM picked"
    " WHERE jobs.id = picked.id RETURNING jobs.id")
_OLD_INDEX = ("CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (priority DESC, created_at)"
              " WHERE status = 'INITIALIZED'")
_REQUEUE = ("UPDATE jobs SET status = 'INITIALIZED', lease_id = NULL, lease_owner = NULL"
            " WHERE lease_owner IN ('fifo', 'fair')")


def fifo_claims(kind: str, url: str, count: int) -> list[float]:
    """Seconds of each of `count` FIFO claims, made straight on the database."""
    times = []
    if kind == "sqlite":
        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        try:
            conn.execute(_OLD_INDEX)
            for _ in range(count):
                started = time.perf_counter()
                now = time.time()
                conn.execute(_FIFO_SQLITE, (now, now, TYPE)).fetchone()
                times.append(time.perf_counter() - started)
            conn.execute(_REQUEUE)
            conn.execute("DROP INDEX jobs_runnable")
        finally:
            conn.close()
        return times
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(_OLD_INDEX)
        for _ in range(count):
            started = time.perf_counter()
            pg.execute(_FIFO_POSTGRES, (TYPE,)).fetchone()
            times.append(time.perf_counter() - started)
        pg.execute(_REQUEUE)
        pg.execute("DROP INDEX jobs_runnable")
        pg.execute("ANALYZE jobs")
    return times


async def fill(url: str, jobs: int, tenants: int) -> None:
    async with opened(url) as store:
        for number in range(jobs):
            await store.submit(noop_job(tenant=f"tenant-{number % tenants}", job_type=TYPE))


def fair_claims(kind: str, url: str, count: int) -> list[float]:
    """Seconds of each of `count` fair claims: the store's own statements, sent
    straight on one connection as the FIFO ones are (no pool, no write thread)."""
    times = []
    if kind == "sqlite":
        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            for _ in range(count):
                started = time.perf_counter()
                job_id = sqlite_tenants.fairest_head(conn, [TYPE], time.time())
                conn.execute("UPDATE jobs SET status = 'RUNNING', lease_id = 'fair',"
                             " lease_owner = 'fair' WHERE id = ?", (job_id,))
                times.append(time.perf_counter() - started)
            conn.execute(_REQUEUE)
        finally:
            conn.close()
        return times
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as pg:
        params = {"types": [TYPE], "owner": "fair", "lease": 600.0, "excluded": []}
        for _ in range(count):
            started = time.perf_counter()
            row = pg.execute(pg_tenants._CLAIM_FAIRLY, params).fetchone()
            times.append(time.perf_counter() - started)
            assert row is not None, "the queue ran dry before the last claim"
        pg.execute(_REQUEUE)
    return times


def one_round(kind: str, tenants: int, jobs: int, folder: Path) -> dict[str, float]:
    with scratch_store(kind, folder) as scratch:
        asyncio.run(fill(scratch.url, jobs, tenants))
        # Half the queue is claimed each way, each half given back after.
        fifo = fifo_claims(kind, scratch.url, jobs // 2)
        fair = fair_claims(kind, scratch.url, jobs // 2)
    return {"fifo_ms": statistics.median(fifo) * 1000, "fair_ms": statistics.median(fair) * 1000}


def run(jobs: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    backends = [kind for kind in BACKENDS if kind == "sqlite" or postgres_reachable() is None]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in backends:
            for shape, tenants in SHAPES.items():
                measured = [one_round(kind, tenants, jobs, Path(tmp)) for _ in range(rounds)]
                fifo = statistics.median(row["fifo_ms"] for row in measured)
                fair = statistics.median(row["fair_ms"] for row in measured)
                results[f"{kind} / {shape}"] = {"fifo_ms": round(fifo, 3),
                                                "fair_ms": round(fair, 3),
                                                "fair_over_fifo": round(fair / fifo, 2)}
    return results


def markdown(results: dict[str, Any], jobs: int, rounds: int) -> str:
    lines = [f"# Fair claims against the FIFO claim ({jobs} jobs queued, median of "
             f"{rounds} rounds)", "",
             "| store / queue | FIFO claim (ms) | fair claim (ms) | fair / FIFO |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {row['fifo_ms']} | {row['fair_ms']} | {row['fair_over_fifo']}x |"
              for name, row in results.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = run(args.jobs, args.rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results, args.jobs, args.rounds)
    (RESULTS / "results.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
