"""The contenders of bench/pg_drivers.py: the store's hot paths on psycopg 3 and on asyncpg.

psycopg contenders run the real `PostgresStore` code (`find_token`, `get`,
`claim`, `complete`); only the pool it talks through varies (its `check`
callback, the connections' `prepare_threshold`). The asyncpg contender is a
port of exactly those four methods, statement for statement, with the same
session settings, pool sizes and row conversions (`rows.job_from_row` on
`dict(record)`). `fidelity_check()` in pg_drivers.py compares the port's SQL
with what the store really sends.

Nothing here is imported by the package.
"""

from __future__ import annotations

import asyncio
import json
import select
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import psycopg
from psycopg_pool import AsyncConnectionPool

from genai_jobs.domain import Job, JobNotFound, Lease, LeaseLost, TokenRecord
from genai_jobs.store.postgres import store as pg_store
from genai_jobs.store.postgres.rows import JOB_COLUMNS, job_from_row, qualified, token_from_row
from genai_jobs.store.postgres.store import PostgresStore

POOL_SIZE = 10  # the store's default (GENAI_JOBS_DATABASE_POOL_SIZE)
STATEMENT_TIMEOUT_MS = 30_000
CHECKOUT_TIMEOUT = pg_store.CONNECT_TIMEOUT_SECONDS


def dollar_params(query: str) -> str:
    """psycopg's `%s` placeholders as asyncpg's `$1, $2, ...`."""
    parts = query.split("%s")
    out = [parts[0]]
    for number, part in enumerate(parts[1:], start=1):
        out.append(f"${number}{part}")
    return "".join(out)


# --- the statements, as the store sends them ---------------------------------
TOKEN_SQL = "SELECT * FROM tokens WHERE secret_hash = %s AND revoked_at IS NULL"
JOB_SQL = "SELECT * FROM jobs WHERE id = %s"
# The store's claim until fair claiming (issue 10) made it a walk over tenants with
# named parameters: kept as the drivers' common workload, one FIFO claim statement.
CLAIM_SQL = (
    "WITH picked AS (SELECT id FROM jobs WHERE status = 'INITIALIZED' AND run_after <= now()"
    " AND expires_at > now() AND job_type = ANY(%s) ORDER BY priority DESC, created_at"
    " LIMIT %s FOR UPDATE SKIP LOCKED)"
    " UPDATE jobs SET status = 'RUNNING', attempts = jobs.attempts + 1, message = '',"
    " lease_id = gen_random_uuid(), lease_owner = %s,"
    " lease_expires_at = now() + make_interval(secs => %s),"
    " started_at = COALESCE(jobs.started_at, now()), updated_at = now()"
    " FROM picked WHERE jobs.id = picked.id AND jobs.status = 'INITIALIZED' RETURNING "
    + qualified(JOB_COLUMNS, "jobs")
)
OVERDUE_SQL = ("SELECT expires_at <= now() AS overdue FROM jobs WHERE id = %s"
               " AND lease_id = %s AND status = 'RUNNING' FOR UPDATE")
# What `_update_one` composes for complete(): fields, then status/updated_at, then the
# lease columns cleared, then the compare-and-set condition of `_update_leased`.
COMPLETE_SQL = (
    'UPDATE jobs SET "result" = %s, "result_location" = %s, "progress" = %s, "message" = %s,'
    ' "finished_at" = now(), "status" = %s, "updated_at" = now(), "lease_id" = %s,'
    ' "lease_owner" = %s, "lease_expires_at" = %s WHERE id = %s AND status = %s'
    " AND lease_id = %s AND lease_expires_at >= now() RETURNING *"
)


class Contender(Protocol):
    key: str
    driver: str
    app_name: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def checkout(self) -> None: ...
    async def find_token(self, secret_hash: str) -> TokenRecord | None: ...
    async def get(self, job_id: UUID, tenant: str | None) -> Job: ...
    async def claim(self, owner: str, job_types: Collection[str], lease_seconds: float,
                    limit: int) -> list[Lease]: ...
    async def complete(self, lease: Lease, result: Any) -> Job: ...
    def connections(self) -> int: ...


async def status_request(contender: Contender, secret_hash: str, job_id: UUID) -> Job:
    """What the status route asks of the store: the token, then the job (two checkouts)."""
    token = await contender.find_token(secret_hash)
    if token is None:
        raise RuntimeError("the benchmark token was not found")
    return await contender.get(job_id, None if token.is_admin else token.tenant)


# --- psycopg: the real store, pool varied ------------------------------------
def _has_input(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection has something to read: a server that closed it
    (restart, crash, pg_terminate_backend) sends a FATAL message and EOF. No I/O."""
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def make_check(kind: str, pool_ref: list[AsyncConnectionPool[Any]]
               ) -> Callable[[Any], Awaitable[None]] | None:
    if kind == "check":
        return AsyncConnectionPool.check_connection
    if kind == "none":
        return None

    async def poll_check(conn: Any) -> None:
        if not _has_input(conn):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error:
            if kind == "poll-drain":
                # One dead connection means the server went away: the idle ones in the
                # pool are dead too. Drop them now, so this checkout's retry (which the
                # pool makes at once) and the next ones get new connections, not the
                # pool's growing back-off between failed checks.
                await pool_ref[0].drain()
            raise

    if kind in ("poll", "poll-drain"):
        return poll_check
    raise ValueError(kind)


class BinaryConnection(psycopg.AsyncConnection[Any]):
    """A connection whose `execute()` asks for binary results unless told otherwise."""

    async def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                      binary: bool = True) -> Any:
        return await super().execute(query, params, prepare=prepare, binary=binary)


class PsycopgContender:
    driver = "psycopg"

    def __init__(self, key: str, url: str, *, check: str = "check",
                 prepare_threshold: int | None = 5, binary: bool = False,
                 pool_size: int = POOL_SIZE) -> None:
        self.key = key
        self.app_name = f"pgbench_{key}"
        self.check_kind = check
        sep = "&" if "?" in url else "?"
        self.store = PostgresStore(f"{url}{sep}application_name={self.app_name}",
                                   pool_size=pool_size)
        if check != "check" or prepare_threshold != 5 or binary:
            # The store's own pool, rebuilt with the same settings but for the varied ones.
            base = self.store._pool
            kwargs = dict(base.kwargs)
            kwargs["prepare_threshold"] = prepare_threshold
            pool_ref: list[AsyncConnectionPool[Any]] = []
            self.store._pool = AsyncConnectionPool(
                base.conninfo, min_size=base.min_size, max_size=base.max_size, open=False,
                connection_class=BinaryConnection if binary else base.connection_class,
                kwargs=kwargs,
                check=make_check(check, pool_ref), reconnect_timeout=base.reconnect_timeout)
            pool_ref.append(self.store._pool)

    async def open(self) -> None:
        # The pool only: the store's LISTEN connection plays no part in these paths.
        await self.store._pool.open(wait=True, timeout=CHECKOUT_TIMEOUT)

    async def close(self) -> None:
        await self.store._pool.close()

    async def checkout(self) -> None:
        async with self.store._pool.connection(timeout=CHECKOUT_TIMEOUT):
            pass

    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        return await self.store.find_token(secret_hash)

    async def get(self, job_id: UUID, tenant: str | None) -> Job:
        return await self.store.get(job_id, tenant)

    async def claim(self, owner: str, job_types: Collection[str], lease_seconds: float,
                    limit: int) -> list[Lease]:
        return await self.store.claim(owner, job_types, lease_seconds, limit)

    async def complete(self, lease: Lease, result: Any) -> Job:
        return await self.store.complete(lease, result, None)

    def connections(self) -> int:
        return int(self.store._pool.get_stats().get("pool_size", 0))


# --- asyncpg: a port of the same four methods --------------------------------
class AsyncpgContender:
    driver = "asyncpg"

    def __init__(self, key: str, url: str, *, statement_cache_size: int = 100,
                 reset: bool = True, pool_size: int = POOL_SIZE) -> None:
        self.key = key
        self.app_name = f"pgbench_{key}"
        self.url = url
        self.statement_cache_size = statement_cache_size
        self.reset = reset
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None
        return self._pool

    async def open(self) -> None:
        async def init(conn: asyncpg.Connection) -> None:
            # psycopg loads json columns with json.loads and dumps Json() with json.dumps;
            # asyncpg hands json over as text unless told.
            await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads,
                                      schema="pg_catalog")

        async def no_reset(conn: asyncpg.Connection) -> None:
            # asyncpg still rolls back an open transaction itself; this skips only the
            # reset query (advisory unlock, CLOSE ALL, UNLISTEN *, RESET ALL).
            return None

        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self.pool_size,
            statement_cache_size=self.statement_cache_size,
            server_settings={"application_name": self.app_name,
                             "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                             "TimeZone": "UTC"},
            init=init, reset=None if self.reset else no_reset)

    async def close(self) -> None:
        if self._pool is not None:
            await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None

    async def checkout(self) -> None:
        async with self.pool.acquire(timeout=CHECKOUT_TIMEOUT):
            pass

    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        async with self.pool.acquire(timeout=CHECKOUT_TIMEOUT) as conn:
            row = await conn.fetchrow(A_TOKEN_SQL, secret_hash)
        return None if row is None else token_from_row(dict(row))

    async def get(self, job_id: UUID, tenant: str | None) -> Job:
        async with self.pool.acquire(timeout=CHECKOUT_TIMEOUT) as conn:
            row = await conn.fetchrow(A_JOB_SQL, job_id)
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise JobNotFound(job_id)
        return job_from_row(dict(row))

    async def claim(self, owner: str, job_types: Collection[str], lease_seconds: float,
                    limit: int) -> list[Lease]:
        if not job_types or limit < 1:
            return []
        async with self.pool.acquire(timeout=CHECKOUT_TIMEOUT) as conn:
            rows = await conn.fetch(A_CLAIM_SQL, sorted(job_types), limit, owner,
                                    float(lease_seconds))
        return [Lease(job_from_row(dict(row)), row["lease_id"], owner, row["lease_expires_at"])
                for row in rows]

    async def complete(self, lease: Lease, result: Any) -> Job:
        async with self.pool.acquire(timeout=CHECKOUT_TIMEOUT) as conn, conn.transaction():
            row = await conn.fetchrow(A_OVERDUE_SQL, lease.job_id, lease.lease_id)
            if row is not None and row["overdue"]:
                raise RuntimeError("a benchmark job expired: its deadline is a day away")
            row = await conn.fetchrow(A_COMPLETE_SQL, result, None, 1.0, "", "COMPLETED",
                                      None, None, None, lease.job_id, "RUNNING",
                                      lease.lease_id)
        if row is None:
            raise LeaseLost(lease.job_id)
        return job_from_row(dict(row))

    def connections(self) -> int:
        return 0 if self._pool is None else self.pool.get_size()


A_TOKEN_SQL = dollar_params(TOKEN_SQL)
A_JOB_SQL = dollar_params(JOB_SQL)
A_CLAIM_SQL = dollar_params(CLAIM_SQL)
A_OVERDUE_SQL = dollar_params(OVERDUE_SQL)
A_COMPLETE_SQL = dollar_params(COMPLETE_SQL)


def contenders(url: str) -> dict[str, Callable[[], Contender]]:
    """Every setup the benchmark knows, by key. `psycopg-store` is the store as shipped."""
    return {
        "psycopg-store": lambda: PsycopgContender("psycopg-store", url),
        "psycopg-nocheck": lambda: PsycopgContender("psycopg-nocheck", url, check="none"),
        "psycopg-poll": lambda: PsycopgContender("psycopg-poll", url, check="poll"),
        "psycopg-poll-drain": lambda: PsycopgContender("psycopg-poll-drain", url,
                                                       check="poll-drain"),
        "psycopg-poll-drain-binary": lambda: PsycopgContender(
            "psycopg-poll-drain-binary", url, check="poll-drain", binary=True),
        "psycopg-noprepare": lambda: PsycopgContender("psycopg-noprepare", url,
                                                      prepare_threshold=None),
        "psycopg-prepare0": lambda: PsycopgContender("psycopg-prepare0", url,
                                                     prepare_threshold=0),
        "asyncpg": lambda: AsyncpgContender("asyncpg", url),
        "asyncpg-noreset": lambda: AsyncpgContender("asyncpg-noreset", url, reset=False),
        "asyncpg-nocache": lambda: AsyncpgContender("asyncpg-nocache", url,
                                                    statement_cache_size=0),
    }
