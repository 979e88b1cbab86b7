"""4. Scale: status lookups, a list page and the size on disk, as the store grows.

One scratch store per backend grows through the levels (1 thousand, 100
thousand, 1 million jobs; --quick: 1 thousand and 20 thousand). Rows are
bulk-loaded with one SQL statement per 100,000 rows, straight into the `jobs`
table of the migrated schema, all indexes in place:

- SQLite: a recursive CTE counts the rows; ids are `randomblob` UUIDs written as
  the store writes them (lower-case, dashed); loaded on a connection of its own
  with `synchronous=OFF`; the WAL is checkpointed (TRUNCATE) after each level;
- PostgreSQL: `generate_series` and `gen_random_uuid()`, with
  `session_replication_role = replica` so the per-row NOTIFY triggers do not
  fire for rows nobody waits for; `VACUUM ANALYZE jobs` after each level (what
  autovacuum would do soon after such a load).

Every bulk row is a COMPLETED `bench.noop` job of tenant `bulk`, created one
every 50 ms back from now (so none is old enough for the retention purge).

At each level, with a fresh `genai-jobs serve --workers 0`:

- status lookup over HTTP: wrk with 1 connection (one request at a time, so the
  figure is a lookup's latency, not queueing), each request for a random one of
  1,000 random jobs, authenticated as admin; p50/p99 per round;
- status lookup in the store alone: `store.get(id)` in this process for the same
  random jobs, one at a time: the database's share;
- list page: `GET /api/v2/genai/jobs/?limit=100` as tenant `bulk` (every job of
  the store is theirs), wrk with 1 connection;
- size on disk: the SQLite file (after the checkpoint; WAL and shm included), or
  `pg_total_relation_size('jobs')` (table, indexes, TOAST).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from typing import Any
from uuid import UUID

import psycopg
from bench.harness import (
    Run,
    Scratch,
    Service,
    opened,
    percentiles,
    run_wrk,
    scratch_store,
    spread,
    wrk_available,
    wrk_paths_script,
)

from genai_jobs.store import sqlite_path

CHUNK = 100_000
STEP_SECONDS = 0.05
PROBES = 1000
STORE_LOOKUPS = 2000

_SQLITE_BULK = """
WITH RECURSIVE seq(n) AS (SELECT :first UNION ALL SELECT n + 1 FROM seq WHERE n < :last)
INSERT INTO jobs (id, tenant, job_type, payload, description, status, message, result,
                  progress, progress_message, attempts, max_attempts, priority, created_at,
                  updated_at, started_at, finished_at, expires_at, run_after, change_seq)
SELECT lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
             || substr(h, 18, 3) || '-' || substr(h, 21, 12)),
       'bulk', 'bench.noop', '{}', 'bulk-loaded', 'COMPLETED', '', '{"started":0.0}',
       1.0, '', 1, 3, 0, t, t + 0.01, t + 0.005, t + 0.01, t + 3 * 86400, t, 0
FROM (SELECT hex(randomblob(16)) AS h, :now - (:top - n) * :step AS t FROM seq)
"""

_POSTGRES_BULK = """
INSERT INTO jobs (id, tenant, job_type, payload, description, status, message, result,
                  progress, progress_message, attempts, max_attempts, priority, created_at,
                  updated_at, started_at, finished_at, expires_at, run_after)
SELECT gen_random_uuid(), 'bulk', 'bench.noop', '{}', 'bulk-loaded', 'COMPLETED', '',
       '{"started": 0.0}', 1.0, '', 1, 3, 0, t, t + interval '10 ms', t + interval '5 ms',
       t + interval '10 ms', t + interval '3 days', t
FROM (SELECT now() - make_interval(secs => (%(top)s::bigint - n) * %(step)s::float8) AS t
      FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n) AS rows
"""


def bulk_load(scratch: Scratch, first: int, last: int, top: int) -> None:
    """Insert jobs number `first`..`last` (of `top` in all) straight into the table."""
    if scratch.kind == "sqlite":
        conn = sqlite3.connect(sqlite_path(scratch.url), isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA cache_size = -262144")  # 256 MiB for the index builds
            now = time.time()
            for start in range(first, last + 1, CHUNK):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_SQLITE_BULK, {"first": start, "last": min(start + CHUNK - 1, last),
                                            "now": now, "top": top, "step": STEP_SECONDS})
                conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return
    with psycopg.connect(scratch.url, autocommit=True) as pg:
        pg.execute("SET session_replication_role = replica")  # no NOTIFY per bulk row
        for start in range(first, last + 1, CHUNK):
            pg.execute(_POSTGRES_BULK.encode(), {"first": start, "top": top, "step": STEP_SECONDS,
                                                 "last": min(start + CHUNK - 1, last)})
        pg.execute("VACUUM ANALYZE jobs")


def size_bytes(scratch: Scratch) -> int:
    if scratch.kind == "sqlite":
        path = sqlite_path(scratch.url)
        return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"),
                                              path.with_name(path.name + "-shm")) if p.exists())
    with psycopg.connect(scratch.url, autocommit=True) as pg:
        row = pg.execute("SELECT pg_total_relation_size('jobs')").fetchone()
        return int(row[0]) if row else 0


def random_ids(scratch: Scratch, count: int) -> list[str]:
    if scratch.kind == "sqlite":
        conn = sqlite3.connect(sqlite_path(scratch.url), timeout=30)
        try:
            return [row[0] for row in conn.execute(
                "SELECT id FROM jobs ORDER BY random() LIMIT ?", (count,))]
        finally:
            conn.close()
    with psycopg.connect(scratch.url, autocommit=True) as pg:
        return [str(row[0]) for row in pg.execute(
            "SELECT id FROM jobs ORDER BY random() LIMIT %s", (count,))]


async def store_lookups(url: str, ids: list[str], count: int) -> list[float]:
    """Microseconds of `store.get` for `count` lookups of random ids, one at a time."""
    chooser = random.Random(7)
    uuids = [UUID(i) for i in ids]
    timings = []
    async with opened(url) as store:
        for job_id in uuids[:50]:  # warm-up
            await store.get(job_id)
        for _ in range(count):
            job_id = chooser.choice(uuids)
            started = time.perf_counter()
            await store.get(job_id)
            timings.append((time.perf_counter() - started) * 1e6)
    return timings


def measure_level(ctx: Run, scratch: Scratch, jobs: int, seconds: int,
                  rounds: int) -> dict[str, Any]:
    ids = random_ids(scratch, PROBES)
    script = wrk_paths_script(ctx.folder, [f"/api/v2/genai/status/{i}/" for i in ids])
    level: dict[str, Any] = {"jobs": jobs, "size_bytes": size_bytes(scratch),
                             "http_lookup": [], "store_lookup": [], "list_page": []}
    with Service.genai_jobs("serve", scratch.url, ctx.folder, "--workers", "0") as server:
        if not ctx.smoke:
            run_wrk(server.base + "/", scratch.admin_token, 1, 1, 1, script)  # warm-up
        for _ in range(rounds):
            report = run_wrk(server.base + "/", scratch.admin_token, seconds, 1, 1, script)
            level["http_lookup"].append({"p50_ms": report["p50_us"] / 1000,
                                         "p99_ms": report["p99_us"] / 1000,
                                         "requests": report["requests"],
                                         "errors": report["errors"]})
            timings = asyncio.run(store_lookups(scratch.url, ids, STORE_LOOKUPS))
            level["store_lookup"].append({"p50_us": percentiles(timings)["p50"],
                                          "p99_us": percentiles(timings)["p99"]})
        for _ in range(rounds):
            report = run_wrk(server.base + "/api/v2/genai/jobs/?limit=100", scratch.tenant_token,
                             seconds, 1, 1)
            level["list_page"].append({"p50_ms": report["p50_us"] / 1000,
                                       "p99_ms": report["p99_us"] / 1000,
                                       "requests": report["requests"],
                                       "errors": report["errors"]})
    level["summary"] = {
        "http_p50_ms": spread(r["p50_ms"] for r in level["http_lookup"]),
        "http_p99_ms": spread(r["p99_ms"] for r in level["http_lookup"]),
        "store_p50_us": spread(r["p50_us"] for r in level["store_lookup"]),
        "store_p99_us": spread(r["p99_us"] for r in level["store_lookup"]),
        "list_p50_ms": spread(r["p50_ms"] for r in level["list_page"]),
        "list_p99_ms": spread(r["p99_ms"] for r in level["list_page"]),
        "errors": sum(r["errors"] for r in level["http_lookup"] + level["list_page"]),
    }
    return level


def run(ctx: Run) -> dict[str, Any]:
    if not wrk_available():
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    levels = ctx.size([1_000, 100_000, 1_000_000], [1_000, 20_000], smoke=[200, 1_000])
    seconds = ctx.size(3, 2, smoke=1)
    rounds = ctx.size(3, 1, smoke=1)
    out: dict[str, Any] = {"settings": {"levels": levels, "seconds": seconds, "rounds": rounds,
                                        "probes": PROBES, "store_lookups": STORE_LOOKUPS,
                                        "chunk": CHUNK},
                           "backends": {}}
    top = levels[-1]
    for kind in ctx.backends:
        results: list[dict[str, Any]] = []
        with contextlib.ExitStack() as stack:
            scratch = stack.enter_context(scratch_store(kind, ctx.folder))
            loaded = 0
            for jobs in levels:
                if ctx.out_of_time(f"scale {kind} at {jobs} jobs"):
                    break
                started = time.monotonic()
                bulk_load(scratch, loaded + 1, jobs, top)
                load_seconds = time.monotonic() - started
                loaded = jobs
                level = measure_level(ctx, scratch, jobs, seconds, rounds)
                level["load_seconds"] = load_seconds
                results.append(level)
                summary = level["summary"]
                ctx.log(f"  {kind:8} {jobs:>9,} jobs (loaded in {load_seconds:5.1f} s): "
                        f"lookup p50 {summary['http_p50_ms']['median']:.2f} ms "
                        f"p99 {summary['http_p99_ms']['median']:.2f} ms, store "
                        f"{summary['store_p50_us']['median']:.0f} us; list page p50 "
                        f"{summary['list_p50_ms']['median']:.1f} ms; "
                        f"{level['size_bytes'] / 2**20:.1f} MiB")
        first, last = (results[0], results[-1]) if results else (None, None)
        entry: dict[str, Any] = {"levels": results}
        if first is not None and last is not None and last is not first:
            entry["lookup_ratio_last_vs_first"] = (last["summary"]["http_p50_ms"]["median"]
                                                   / first["summary"]["http_p50_ms"]["median"])
            entry["store_ratio_last_vs_first"] = (last["summary"]["store_p50_us"]["median"]
                                                  / first["summary"]["store_p50_us"]["median"])
            # Bytes per million jobs, from the growth between the first and last level.
            grown = last["size_bytes"] - first["size_bytes"]
            entry["bytes_per_million"] = grown / (last["jobs"] - first["jobs"]) * 1_000_000
        out["backends"][kind] = entry
    return out
