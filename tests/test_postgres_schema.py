"""PostgreSQL schema: migrations (fresh vs upgraded, concurrent) and the plans of hot queries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from genai_jobs.domain import JobQuery, StoreUnavailable
from genai_jobs.store.migrations import load_migrations
from genai_jobs.store.postgres import PostgresStore, tenants
from genai_jobs.store.postgres.store import MIGRATIONS_PACKAGE
from tests.pg_support import create_database, drop_database, scratch_store
from tests.store_support import new_job
from tests.support import run_cli

# Enough rows that the planner prefers indexes to scanning the table.
ROWS = 50_000


@pytest.fixture
def database() -> Iterator[str]:
    with scratch_store("postgres") as url:
        assert url is not None
        yield url


@pytest.fixture
def other_database() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def migrate(url: str) -> list[int]:
    async def run() -> list[int]:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            return await store.migrate()
        finally:
            await store.close()

    return asyncio.run(run())


def schema(url: str) -> dict[str, Any]:
    """Tables, columns, indexes, constraints and triggers, comparable as data."""
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY table_name, column_name").fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " ORDER BY indexname").fetchall()
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY conname").fetchall()
        triggers = conn.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal"
            " ORDER BY tgname").fetchall()
    return {"columns": columns, "indexes": indexes, "constraints": constraints,
            "triggers": triggers}


def test_an_upgraded_database_ends_with_the_same_schema_as_a_fresh_one(
    database: str, other_database: str
) -> None:
    migrations = load_migrations(MIGRATIONS_PACKAGE)
    assert len(migrations) >= 2
    # An older deployment: only the first migration, recorded as the runner records it.
    with psycopg.connect(other_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                     " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(migrations[0].sql.encode())
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                     (migrations[0].version, migrations[0].name))
    assert migrate(other_database) == [m.version for m in migrations[1:]]
    assert migrate(database) == [m.version for m in migrations]
    assert schema(database) == schema(other_database)
    assert migrate(database) == []


def test_processes_migrating_at_once_apply_each_migration_once(database: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run_cli("migrate", "--database-url", database),
                                range(4)))
    outputs = [result.stdout.strip() for result in results]
    assert sum(output.startswith("applied migrations") for output in outputs) == 1
    assert outputs.count("the store is up to date") == 3
    with psycopg.connect(database) as conn:
        versions = [row[0] for row in conn.execute(
            "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in load_migrations(MIGRATIONS_PACKAGE)]


def _fill(url: str) -> None:
    """ROWS finished jobs over 50 tenants, a few queued ones, then fresh statistics."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, tenant, job_type, payload, status, max_attempts,"
            " created_at, updated_at, expires_at, run_after, finished_at)"
            " SELECT gen_random_uuid(), 'tenant-' || (n %% 50), 'diagnostics.sleep', '{}',"
            " CASE WHEN n %% 1000 = 0 THEN 'INITIALIZED' ELSE 'COMPLETED' END, 1,"
            " now() - n * interval '1 second', now(), now() + interval '1 day', now(),"
            " CASE WHEN n %% 1000 = 0 THEN NULL ELSE now() END"
            " FROM generate_series(1, %s) AS n", (ROWS,))
        conn.execute("ANALYZE jobs")


def _plan(url: str, query: str, params: Any) -> str:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"EXPLAIN {query}", params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_hot_queries_use_their_indexes(database: str) -> None:
    migrate(database)
    _fill(database)
    with psycopg.connect(database) as conn:
        some_id = conn.execute("SELECT id FROM jobs LIMIT 1").fetchone()[0]  # type: ignore[index]
    status = _plan(database, "SELECT * FROM jobs WHERE id = %s", (some_id,))
    assert "Index Scan using jobs_pkey" in status
    claim = _plan(database, tenants._CLAIM_FAIRLY, {
        "types": ["diagnostics.sleep"], "owner": "w", "lease": 60.0, "excluded": []})
    # Both the walk over tenants and each tenant's head are index probes.
    assert "jobs_queued_by_tenant" in claim
    assert "Seq Scan on jobs" not in claim
    listing = _plan(database, "SELECT * FROM jobs WHERE tenant = %s"
                    " ORDER BY created_at DESC, id DESC LIMIT 100 OFFSET 0", ("tenant-7",))
    assert "jobs_tenant_created" in listing
    assert "Sort" not in listing  # the index gives the order
    by_type = _plan(database, "SELECT * FROM jobs WHERE tenant = %s AND job_type = %s"
                    " ORDER BY created_at DESC, id DESC LIMIT 100", ("tenant-7", "x"))
    assert "jobs_tenant_type_created" in by_type
    purge = _plan(database, "SELECT id FROM jobs WHERE finished_at < now() - interval '1 day'"
                  " AND status IN ('COMPLETED', 'ERROR', 'ABORTED', 'EXPIRED') LIMIT 500", ())
    assert "jobs_finished" in purge


def test_a_running_store_keeps_working_when_a_migration_adds_columns(database: str) -> None:
    """psycopg prepares a statement on its fifth use; a prepared `SELECT *` would fail with
    "cached plan must not change result type" after ALTER TABLE ... ADD COLUMN."""
    migrate(database)

    async def run() -> None:
        store = PostgresStore(database, pool_size=1)  # one connection: every call reuses it
        await store.open()
        try:
            await store.create_token("acme", False, "hash")
            job = (await store.submit(new_job())).job
            for _ in range(8):  # past the prepare threshold
                await store.get(job.id)
                await store.find_token_and_status("hash", job.id)
                await store.list_jobs(JobQuery(tenant="acme"))
                await store.find_token("hash")
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("ALTER TABLE jobs ADD COLUMN added_later text")
                conn.execute("ALTER TABLE tokens ADD COLUMN added_later text")
            assert (await store.get(job.id)).id == job.id
            token, seen = await store.find_token_and_status("hash", job.id)
            assert token is not None
            assert seen is not None
            assert seen.id == job.id
            assert (await store.list_jobs(JobQuery(tenant="acme"))).total_count == 1
            assert await store.find_token("hash") == token
            for _ in range(8):
                await store.get(job.id)
            with psycopg.connect(database, autocommit=True) as conn:  # a column changes type
                conn.execute("ALTER TABLE jobs ALTER COLUMN message TYPE varchar(100000)")
            with pytest.raises(StoreUnavailable, match="outdated by a migration"):
                await store.get(job.id)  # once: the connection is replaced
            assert (await store.get(job.id)).id == job.id
        finally:
            await store.close()

    asyncio.run(run())
