"""Which plan a *prepared* claim statement runs with, as the queue changes under it.

    .venv/bin/python -m bench.pg_claim_plans [--out bench/results/pg-drivers]

Both drivers prepare the claim on a long-lived pooled connection (asyncpg at
once, psycopg after 5 uses). PostgreSQL then plans its first 5 executions
for their parameters (custom plans) and may switch to one generic plan,
kept until something invalidates it. The store's `_CLAIM` passes LIMIT as a
parameter, and a generic plan cannot know it is 1.

Scenario, per variant, on a fresh session: the worker polls an *empty* queue
(its idle state: a claim a second) 12 times, then 5,000 jobs arrive, then it
claims again, first before autovacuum has analysed the table (statistics still
say the queue is empty), then after ANALYZE. Each execution is an EXPLAIN
ANALYZE EXECUTE inside a rolled-back transaction, so the queue stays as it was.

Variants: the store's statement (LIMIT $2); the same with the limit written
into the text (LIMIT 1, a literal); and the store's statement with the
session's `plan_cache_mode = force_custom_plan`.
A scratch database, dropped at the end; every loop bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path
from typing import Any

import psycopg
from bench.pg_clients import A_CLAIM_SQL
from bench.pg_drivers import CLAIM_TYPE, DEFAULT_ADMIN_URL, build, create_database, drop_database

VARIANTS = {
    "store (LIMIT $2)": (A_CLAIM_SQL, "text[], integer, text, double precision", None),
    "LIMIT literal": (A_CLAIM_SQL.replace("LIMIT $2", "LIMIT 1").replace("$3", "$2")
                      .replace("$4", "$3"), "text[], text, double precision", None),
    "store + force_custom_plan": (A_CLAIM_SQL, "text[], integer, text, double precision",
                                  "force_custom_plan"),
}


def args_for(types: str) -> str:
    if types.count(",") == 3:
        return f"(ARRAY['{CLAIM_TYPE}'], 1, 'plans', 30.0)"
    return f"(ARRAY['{CLAIM_TYPE}'], 'plans', 30.0)"


async def queue(conn: psycopg.AsyncConnection[Any], size: int, analyze: bool) -> None:
    await conn.execute("DELETE FROM jobs WHERE job_type = %s", (CLAIM_TYPE,))
    if size:
        await conn.execute(
            "INSERT INTO jobs (id, tenant, job_type, payload, status, max_attempts, created_at,"
            " expires_at, run_after) SELECT gen_random_uuid(), 'claim', %s, '{}', 'INITIALIZED',"
            " 3, now() - (%s - g) * interval '1 millisecond', now() + interval '1 day',"
            " now() - interval '1 second' FROM generate_series(1, %s) AS g",
            (CLAIM_TYPE, size, size))
    if analyze:
        await conn.execute("ANALYZE jobs")


async def execute(conn: psycopg.AsyncConnection[Any], types: str) -> dict[str, Any]:
    async with conn.transaction(force_rollback=True):
        rows = await (await conn.execute(
            "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) EXECUTE bench_claim" + args_for(types)
        )).fetchall()
    text = "\n".join(row[0] for row in rows)
    generic = "$1" in text  # a generic plan shows its parameters, a custom one the values
    sort = "Sort Key" in text
    ms = float(re.search(r"Execution Time: ([\d.]+)", text).group(1))  # type: ignore[union-attr]
    plan_ms = float(re.search(r"Planning Time: ([\d.]+)", text).group(1))  # type: ignore[union-attr]
    claimed = "actual rows=1 loops=1" in text.splitlines()[0]
    return {"plan": ("generic" if generic else "custom") + (" +sort" if sort else " index"),
            "exec_ms": ms, "plan_ms": plan_ms, "claimed": claimed}


async def scenario(url: str, sql_text: str, types: str, mode: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as setup:
        await queue(setup, 0, analyze=True)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            if mode:
                await conn.execute(f"SET plan_cache_mode = {mode}")
            await conn.execute(f"PREPARE bench_claim({types}) AS {sql_text}")
            out["idle polls (empty queue)"] = [await execute(conn, types) for _ in range(12)]
            await queue(setup, 5000, analyze=False)
            out["5000 queued, not yet analysed"] = [await execute(conn, types) for _ in range(3)]
            await setup.execute("ANALYZE jobs")
            out["5000 queued, analysed"] = [await execute(conn, types) for _ in range(3)]
    return out


def brief(result: dict[str, Any]) -> dict[str, Any]:
    return {stage: sorted({f"{e['plan']}" for e in execs}) and [
        f"{e['plan']} {e['exec_ms']:.2f}+{e['plan_ms']:.2f} ms" for e in execs]
        for stage, execs in result.items()}


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--repeats runs, each on a fresh scratch database: the plans differ from run to run."""
    runs = []
    for _ in range(args.repeats):
        name, url = create_database(args.admin_url)
        try:
            await build(url, args.jobs)
            results = {}
            for variant, (sql_text, types, mode) in VARIANTS.items():
                results[variant] = brief(await scenario(url, sql_text, types, mode))
            runs.append(results)
        finally:
            drop_database(args.admin_url, name)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out")
    args = parser.parse_args()
    results = asyncio.run(amain(args))
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "claim-plans.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
