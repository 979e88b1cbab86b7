"""What a migration that adds a column to `jobs` does to a running process's
prepared statements (`SELECT * FROM jobs ...`, `RETURNING *`).

    .venv/bin/python -m bench.pg_schema_change [--out bench/results/pg-drivers]

For each setup: a pool of one connection (so every call reuses the same
session and its prepared statements), 10 status lookups and claims, then
`ALTER TABLE jobs ADD COLUMN` from another connection, then the same calls
again, outside and inside a transaction. Records which calls failed and how.
A scratch database, dropped at the end. Bounded: a few dozen statements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import psycopg
from bench.pg_clients import AsyncpgContender, Contender, PsycopgContender, status_request
from bench.pg_drivers import (
    CLAIM_TYPE,
    DEFAULT_ADMIN_URL,
    LEASE_SECONDS,
    RESULT,
    build,
    create_database,
    drop_database,
    reset_queue,
)

SETUPS = {
    "psycopg-store (prepare_threshold=5)": lambda url: PsycopgContender(
        "sc-psycopg", url, pool_size=1),
    "psycopg prepare_threshold=None": lambda url: PsycopgContender(
        "sc-psycopg-noprep", url, prepare_threshold=None, pool_size=1),
    "asyncpg (statement cache 100)": lambda url: AsyncpgContender(
        "sc-asyncpg", url, pool_size=1),
    "asyncpg statement_cache_size=0": lambda url: AsyncpgContender(
        "sc-asyncpg-nocache", url, statement_cache_size=0, pool_size=1),
}


async def outcome(coro: Any) -> str:
    try:
        await asyncio.wait_for(coro, 10)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
    return "ok"


async def one_setup(url: str, name: str, make: Any, secret_hash: str, job_id: Any,
                    column: str) -> dict[str, Any]:
    c: Contender = make(url)
    await c.open()
    result: dict[str, Any] = {"setup": name}
    try:
        async def cycle() -> None:
            leases = await c.claim("sc", [CLAIM_TYPE], LEASE_SECONDS, 1)
            await c.complete(leases[0], RESULT)

        for _ in range(10):  # past psycopg's prepare_threshold and the server's 5 custom plans
            await status_request(c, secret_hash, job_id)
            await cycle()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as ddl:
            await ddl.execute(f"ALTER TABLE jobs ADD COLUMN {column} text")
        result["status after ALTER"] = [await outcome(status_request(c, secret_hash, job_id))
                                        for _ in range(3)]
        # claim is one statement; complete is a transaction (SELECT ... FOR UPDATE, UPDATE)
        result["claim+complete after ALTER"] = [await outcome(cycle()) for _ in range(3)]
    finally:
        await c.close()
    return result


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    name, url = create_database(args.admin_url)
    try:
        data = await build(url, 2000)
        await reset_queue(url, 200)
        results = []
        for n, (setup, make) in enumerate(SETUPS.items()):
            results.append(await one_setup(url, setup, make, data.secret_hash, data.job_ids[0],
                                           f"bench_extra_{n}"))
        return results
    finally:
        drop_database(args.admin_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("psycopg", "psycopg.pool", "asyncpg"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    results = asyncio.run(amain(args))
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "schema-change.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
