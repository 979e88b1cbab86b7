"""The scale-out store: PostgreSQL, shared by API replicas and workers on many machines.

Claims take rows with `FOR UPDATE SKIP LOCKED`, so concurrent workers never
wait for each other or take the same job. Every transition is one
conditional UPDATE in its own transaction. A trigger announces each change
with NOTIFY; a Listener turns announcements into local wake-ups. Leases,
claims and the maintenance sweep compare against the database clock
(`now()`), so workers with skewed clocks still agree on who holds a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import select
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from genai_jobs.domain import (
    IdempotencyConflict,
    IllegalTransition,
    Job,
    JobNotFound,
    JobPage,
    JobPageJson,
    JobQuery,
    JobState,
    JobStatus,
    Lease,
    LeaseLost,
    NewJob,
    StoreUnavailable,
    SubmitOutcome,
    TenantLimits,
    TokenNotFound,
    TokenRecord,
    check_transition,
    rules,
)
from genai_jobs.domain.tenants import priority_refusal, submit_refusal
from genai_jobs.store.base import Store
from genai_jobs.store.changes import ChangeFeed
from genai_jobs.store.gathered import GatheredLookups
from genai_jobs.store.migrations import load_migrations
from genai_jobs.store.postgres import job_json, tenants
from genai_jobs.store.postgres.listener import Listener
from genai_jobs.store.postgres.rows import (
    JOB_COLUMNS,
    STATUS_COLUMNS,
    TOKEN_COLUMNS,
    Row,
    job_from_row,
    qualified,
    status_from_row,
    token_from_row,
)
from genai_jobs.store.rendered import RenderedJobs, Rows

log = logging.getLogger("genai_jobs.store.postgres")

MIGRATIONS_PACKAGE = "genai_jobs.store.postgres.migrations"
# Serialises migrations of processes that start together.
MIGRATION_LOCK_KEY = 0x67656E6169  # "genai"
PURGE_BATCH = 500
# How long to wait for a pooled connection before telling the caller the store is down.
CONNECT_TIMEOUT_SECONDS = 5.0
# Readiness probes must answer quickly, down or not.
READY_TIMEOUT_SECONDS = 1.0

Conn = AsyncConnection[DictRow]

# TCP keepalives, unless the URL sets its own: a database host that vanishes without
# a FIN or RST (power loss, a fail-over) is noticed in about a minute instead of the
# kernel's default two hours, which no check at checkout can see.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
              "keepalives_count": "3"}


class Now:
    """The database clock, as a value in a column assignment."""


class NowPlus:
    """`now()` plus some seconds, as a value in a column assignment."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


NOW = Now()


class PostgresStore(Store):
    def __init__(self, url: str, *, pool_size: int = 10,
                 statement_timeout_seconds: float = 30.0) -> None:
        self.url = url
        self.changes = ChangeFeed()
        conninfo = _with_keepalives(url)
        self._pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=pool_size, open=False, connection_class=Conn,
            kwargs={"autocommit": True, "row_factory": dict_row,
                    "options": f"-c statement_timeout={int(statement_timeout_seconds * 1000)}"
                               " -c TimeZone=UTC"},
            # A connection broken by a database restart is replaced, not handed out.
            check=_check_if_disturbed,
            reconnect_timeout=0,  # keep trying for ever: the database may come back
        )
        self._listener = Listener(conninfo, self.changes)
        self._listener_task: asyncio.Task[None] | None = None
        self._limits = tenants.LimitsCache()
        self._tokens_and_statuses = GatheredLookups(self._find_tokens_and_statuses)
        self._rendered = RenderedJobs()

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        """The connection pool, for stores of other records in this database."""
        return self._pool

    # -- life cycle -------------------------------------------------------
    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        except PoolTimeout as exc:
            await self._pool.close()
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {_safe(self.url)}") from exc
        self._listener_task = asyncio.create_task(self._listener.run(), name="pg-listen")

    async def close(self) -> None:
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener_task
            self._listener_task = None
        await self._pool.close()

    async def migrate(self) -> list[int]:
        migrations = load_migrations(MIGRATIONS_PACKAGE)
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {row["version"] for row in
                    await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()}
            applied = []
            for migration in migrations:
                if migration.version in done:
                    continue
                await conn.execute(migration.sql.encode())  # no parameters: a script
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                   (migration.version, migration.name))
                applied.append(migration.version)
            return applied

    async def check_ready(self) -> None:
        expected = max(m.version for m in load_migrations(MIGRATIONS_PACKAGE))
        async with self._connection(READY_TIMEOUT_SECONDS) as conn:
            row = await _one(conn, "SELECT MAX(version) AS version FROM schema_migrations", ())
        found = None if row is None else row["version"]
        if found != expected:
            raise StoreUnavailable(f"PostgreSQL store schema is at {found}, expected {expected}:"
                                   " run `genai-jobs migrate`")

    # -- jobs: submitters -------------------------------------------------
    async def submit(self, new: NewJob) -> SubmitOutcome:
        values = (uuid.uuid4(), new.tenant, new.job_type, Json(new.payload), new.description,
                  new.max_attempts, new.priority, new.expires_at, new.idempotency_key,
                  new.request_hash)
        limits = await self._limits.for_tenant(self._connection, new.tenant)
        refused = priority_refusal(limits, new.priority)
        if refused is not None:
            raise refused
        if limits.limits_submits:
            return await self._submit_limited(new, limits, values)
        # Autocommitted statements: no BEGIN and COMMIT round trips around them.
        async with self._connection() as conn:
            if new.idempotency_key is None:
                job = job_from_row(_required(await _one(conn, _INSERT_JOB, values)))
                return SubmitOutcome(self._announce(job), created=True)
            for _ in range(3):  # bounded: the earlier job may be purged in between
                # Two submissions with one key may race: ON CONFLICT makes the second
                # wait for the first to commit, then insert nothing and read its row.
                row = await _one(conn, _INSERT_KEYED_JOB, values)
                if row is not None:
                    return SubmitOutcome(self._announce(job_from_row(row)), created=True)
                earlier = await _earlier_submission(conn, new)
                if earlier is not None:
                    return earlier
        raise StoreUnavailable(f"idempotency key {new.idempotency_key!r} keeps changing hands")

    async def _submit_limited(self, new: NewJob, limits: TenantLimits,
                              values: tuple[Any, ...]) -> SubmitOutcome:
        """A submit of a tenant with a queued or rate limit: counted and inserted under
        the tenant's lock, so concurrent submits on any replica cannot overshoot."""
        async with self._transaction() as conn:
            await tenants.lock_tenant(conn, new.tenant)
            keyed = new.idempotency_key is not None
            # A replay returns the job it made, whatever the limits say now.
            earlier = await _earlier_submission(conn, new) if keyed else None
            if earlier is not None:
                return earlier
            queued, recent, now = await tenants.submit_counts(conn, limits)
            refused = submit_refusal(limits, queued, recent, now)
            if refused is not None:
                raise refused
            row = await _one(conn, _INSERT_KEYED_JOB if keyed else _INSERT_JOB, values)
            if row is None:  # the key was taken meanwhile by a submit that took no lock
                earlier = await _earlier_submission(conn, new)
                if earlier is None:
                    raise StoreUnavailable(
                        f"idempotency key {new.idempotency_key!r} keeps changing hands")
                return earlier
        return SubmitOutcome(self._announce(job_from_row(row)), created=True)

    async def record_completed(self, new: NewJob, result: Any, result_location: str | None) -> Job:
        async with self._connection() as conn:
            row = await _one(conn, _RECORD_COMPLETED, (
                uuid.uuid4(), new.tenant, new.job_type, Json(new.payload), new.description,
                Json(result), result_location, new.max_attempts, new.priority, new.expires_at))
        return self._announce(job_from_row(_required(row)))

    async def get(self, job_id: UUID, tenant: str | None = None) -> Job:
        async with self._connection() as conn:
            row = await _one(conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise JobNotFound(job_id)
        return job_from_row(row)

    async def is_empty(self) -> bool:
        async with self._connection() as conn:
            row = _required(await _one(
                conn, "SELECT to_regclass('schema_migrations') IS NULL AS empty", ()))
        return bool(row["empty"])

    async def list_jobs(self, query: JobQuery) -> JobPage:
        where, params = _list_filter(query)
        async with self._connection() as conn:
            total = _required(await _one(conn, sql.SQL("SELECT COUNT(*) AS n FROM jobs {}")
                                         .format(where), params))["n"]
            rows = await (await conn.execute(
                sql.SQL(f"SELECT {JOB_COLUMNS} FROM jobs {{}} ORDER BY created_at DESC, id DESC"
                        " LIMIT %s OFFSET %s").format(where),
                [*params, query.limit, query.offset])).fetchall()
        return JobPage(jobs=[job_from_row(row) for row in rows], total_count=int(total))

    async def list_jobs_json(self, query: JobQuery) -> JobPageJson:
        where, params = _list_filter(query)
        async with self._connection() as conn:
            async def read(asked: list[str] | None, every: bool) -> Rows:
                arguments = [*params, query.limit, query.offset, *params]
                if asked is None:
                    statement = job_json.page_versions_statement(where)
                else:
                    statement = job_json.page_documents_statement(where)
                    arguments += [every, asked]
                async with conn.cursor(row_factory=tuple_row) as cursor:
                    await cursor.execute(statement, arguments)
                    return await cursor.fetchall()

            return await self._rendered.page(read)

    async def request_abort(self, job_id: UUID, tenant: str | None, reason: str) -> Job:
        return self._announce(await self._request_abort(job_id, tenant, reason))

    async def _request_abort(self, job_id: UUID, tenant: str | None, reason: str) -> Job:
        async with self._transaction() as conn:
            row = await _one(conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s FOR UPDATE",
                             (job_id,))
            if row is None or (tenant is not None and row["tenant"] != tenant):
                raise JobNotFound(job_id)
            state = JobState(row["status"])
            if state is JobState.ABORTED:
                return job_from_row(row)
            check_transition(state, JobState.ABORTED)
            if row["abort_reason"] is not None:
                return job_from_row(row)
            if state is JobState.INITIALIZED:
                return await _update_one(conn, job_id, state, JobState.ABORTED, {
                    "message": rules.aborted_before_start(reason), "finished_at": NOW})
            return await _update_one(conn, job_id, state, state, {
                "abort_reason": reason,
                "message": rules.abort_requested(reason)})

    # -- jobs: workers ----------------------------------------------------
    async def claim(
        self, owner: str, job_types: Collection[str], lease_seconds: float, limit: int
    ) -> list[Lease]:
        if not job_types or limit < 1:
            return []
        async with self._connection() as conn:
            rows = await tenants.claim_fairly(conn, owner, job_types, lease_seconds, limit)
        return [Lease(self._announce(job_from_row(row)), row["claimed_lease"], owner,
                      row["lease_expires_at"]) for row in rows]

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Job:
        async with self._connection() as conn:
            row = await _one(conn, "UPDATE jobs SET lease_expires_at = now() + make_interval("
                             "secs => %s) WHERE id = %s AND lease_id = %s AND status = 'RUNNING'"
                             f" AND lease_expires_at >= now() RETURNING {JOB_COLUMNS}",
                             (lease_seconds, lease.job_id, lease.lease_id))
        if row is None:
            raise LeaseLost(lease.job_id)
        return job_from_row(row)

    async def report_progress(self, lease: Lease, fraction: float | None, message: str) -> None:
        async with self._connection() as conn:
            row = await _one(conn, "UPDATE jobs SET progress = COALESCE(%s, progress),"
                             " progress_message = %s, updated_at = now() WHERE id = %s"
                             " AND lease_id = %s AND status = 'RUNNING'"
                             " AND lease_expires_at >= now() RETURNING id",
                             (fraction, message, lease.job_id, lease.lease_id))
        if row is None:
            raise LeaseLost(lease.job_id)
        self.changes.job_changed(lease.job_id, progress_only=True)

    async def complete(self, lease: Lease, result: Any, result_location: str | None) -> Job:
        # The hot path of every job: one statement, where _end_attempt takes four round
        # trips (BEGIN, the deadline check, the update, COMMIT) for the same decision.
        async with self._connection() as conn:
            row = await _one(conn, _COMPLETE, {
                "result": Json(result), "location": result_location,
                "expired": rules.EXPIRED_AT_OUTCOME, "id": lease.job_id,
                "lease": lease.lease_id})
        if row is None:
            raise LeaseLost(lease.job_id)
        return self._announce(job_from_row(row))

    async def fail_attempt(self, lease: Lease, message: str, retry_at: datetime | None) -> Job:
        async with self._transaction() as conn:
            if retry_at is None:
                job = await _end_attempt(conn, lease, JobState.ERROR, {
                    "message": message, "finished_at": NOW})
            else:
                job = await _end_attempt(conn, lease, JobState.INITIALIZED, {
                    "message": message, "run_after": retry_at})
        return self._announce(job)

    async def finish(self, lease: Lease, state: JobState, message: str) -> Job:
        if state not in (JobState.ABORTED, JobState.EXPIRED):
            raise ValueError(f"finish() ends an attempt as ABORTED or EXPIRED, not {state}")
        async with self._connection() as conn:
            job = await _update_leased(conn, lease, state, {
                "message": message, "finished_at": NOW}, require_live_lease=False)
        return self._announce(job)

    async def release(self, lease: Lease, message: str) -> Job:
        async with self._transaction() as conn:
            job = await _update_leased(conn, lease, JobState.INITIALIZED, {
                "message": message, "run_after": NOW,
                "attempts": max(lease.job.attempts - 1, 0)}, require_live_lease=False)
        return self._announce(job)

    # -- maintenance ------------------------------------------------------
    async def expire_overdue(
        self, now: datetime | None, running_grace_seconds: float
    ) -> list[Job]:
        async with self._connection() as conn:
            rows = await (await conn.execute(_EXPIRE, {
                "now": now, "grace": running_grace_seconds,
                "message": rules.EXPIRED_BY_SWEEP})).fetchall()
        return [job_from_row(row) for row in rows]

    async def reclaim_lapsed(
        self, now: datetime | None, retry_delay_seconds: float
    ) -> list[Job]:
        async with self._transaction() as conn:
            rows = await (await conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'RUNNING'"
                " AND lease_expires_at < COALESCE(%s, now()) FOR UPDATE SKIP LOCKED",
                (now,))).fetchall()
            return [await _take_back(conn, job_from_row(row), retry_delay_seconds)
                    for row in rows]

    async def purge(self, finished_before: datetime) -> int:
        total = 0
        while True:  # bounded: every pass deletes rows or stops
            async with self._connection() as conn:
                deleted = (await conn.execute(_PURGE, (finished_before, PURGE_BATCH))).rowcount
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    async def count_by_state(self) -> dict[JobState, int]:
        counts = {state: 0 for state in JobState}
        async with self._connection() as conn:
            for row in await (await conn.execute(
                    "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")).fetchall():
                counts[JobState(row["status"])] = row["n"]
        return counts

    # -- tokens -----------------------------------------------------------
    async def create_token(self, tenant: str, is_admin: bool, secret_hash: str) -> TokenRecord:
        async with self._connection() as conn:
            row = await _one(conn, "INSERT INTO tokens (id, tenant, is_admin, secret_hash)"
                             f" VALUES (%s, %s, %s, %s) RETURNING {TOKEN_COLUMNS}",
                             (uuid.uuid4(), tenant, is_admin, secret_hash))
        return token_from_row(_required(row))

    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        async with self._connection() as conn:
            row = await _one(conn, f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = %s"
                             " AND revoked_at IS NULL", (secret_hash,))
        return None if row is None else token_from_row(row)

    async def find_token_and_status(
            self, secret_hash: str, job_id: UUID) -> tuple[TokenRecord | None, JobStatus | None]:
        # Gathered with the other polls' (store/gathered.py): a crowd of long-polls
        # asks again all at once after each answer.
        return await self._tokens_and_statuses.lookup((secret_hash, job_id))

    async def _find_tokens_and_statuses(
            self, keys: Sequence[tuple[str, UUID]],
    ) -> list[tuple[TokenRecord | None, JobStatus | None]]:
        found: list[tuple[TokenRecord | None, JobStatus | None]] = [(None, None)] * len(keys)
        async with self._connection() as conn:
            rows = await (await conn.execute(_TOKENS_AND_STATUSES, (
                [secret_hash for secret_hash, _ in keys], [job_id for _, job_id in keys],
            ))).fetchall()
        for row in rows:
            found[row["lookup"] - 1] = (token_from_row(row, "token_"),
                                        None if row["id"] is None else status_from_row(row))
        return found

    async def touch_token(self, token_id: UUID, when: datetime) -> None:
        async with self._connection() as conn:
            await conn.execute("UPDATE tokens SET last_used_at = %s WHERE id = %s",
                               (when, token_id))

    async def list_tokens(self) -> list[TokenRecord]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at")).fetchall()
        return [token_from_row(row) for row in rows]

    async def revoke_token(self, token_id: UUID) -> TokenRecord:
        async with self._connection() as conn:
            row = await _one(conn, "UPDATE tokens SET revoked_at = COALESCE(revoked_at, now())"
                             f" WHERE id = %s RETURNING {TOKEN_COLUMNS}", (token_id,))
        if row is None:
            raise TokenNotFound(token_id)
        return token_from_row(row)

    async def count_tokens(self) -> int:
        async with self._connection() as conn:
            return int(_required(await _one(conn, "SELECT COUNT(*) AS n FROM tokens", ()))["n"])

    # -- tenants ----------------------------------------------------------
    async def list_tenant_limits(self) -> list[TenantLimits]:
        async with self._connection() as conn:
            return await tenants.read_limits(conn)

    async def set_tenant_limits(self, limits: TenantLimits) -> None:
        async with self._connection() as conn:
            await tenants.write_limits(conn, limits)
        self._limits.invalidate()

    async def tenant_usage(self) -> dict[str, tuple[int, int]]:
        async with self._connection() as conn:
            return await tenants.read_usage(conn)

    # -- change propagation -------------------------------------------------
    def _announce(self, job: Job) -> Job:
        """Wake this process's waiters for a change it committed itself, as the
        notification will once it has gone round through the database (consumers
        re-read, so hearing of it twice is harmless): an in-process worker or
        long-poll saves that round trip."""
        self.changes.job_changed(job.id)
        if job.status is JobState.INITIALIZED:
            self.changes.work_available()
        return job

    # -- connections --------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _connection(self, timeout: float = CONNECT_TIMEOUT_SECONDS) -> AsyncIterator[Conn]:
        """A pooled connection; an unreachable database becomes StoreUnavailable."""
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                try:
                    yield conn
                except psycopg.errors.FeatureNotSupported:
                    # A statement prepared before a migration changed its table: close
                    # the connection (the pool replaces it) so that only this call fails.
                    await conn.close()
                    raise
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL is unavailable: {_first_line(exc)}") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise StoreUnavailable("the PostgreSQL store is not migrated: run "
                                   "`genai-jobs migrate`") from exc
        except psycopg.errors.FeatureNotSupported as exc:
            raise StoreUnavailable(f"PostgreSQL statement outdated by a migration: "
                                   f"{_first_line(exc)}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn


_INSERT = (
    "INSERT INTO jobs (id, tenant, job_type, payload, description, status, max_attempts,"
    " priority, expires_at, idempotency_key, request_hash)"
    " VALUES (%s, %s, %s, %s, %s, 'INITIALIZED', %s, %s, %s, %s, %s)"
)
_INSERT_JOB = f"{_INSERT} RETURNING {JOB_COLUMNS}"
_RECORD_COMPLETED = (
    "INSERT INTO jobs (id, tenant, job_type, payload, description, status, result,"
    " result_location, progress, attempts, max_attempts, priority, started_at, finished_at,"
    " expires_at) VALUES (%s, %s, %s, %s, %s, 'COMPLETED', %s, %s, 1.0, 1, %s, %s, now(), now(),"
    f" %s) RETURNING {JOB_COLUMNS}"
)
# The conflict target names the partial unique index's predicate, as PostgreSQL requires.
_INSERT_KEYED_JOB = (f"{_INSERT} ON CONFLICT (tenant, idempotency_key)"
                     f" WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING {JOB_COLUMNS}")

# SKIP LOCKED: a row another claimer holds is passed over, never waited for.
_EXPIRE = (
    "UPDATE jobs SET status = 'EXPIRED', lease_id = NULL, lease_owner = NULL,"
    " lease_expires_at = NULL, finished_at = now(), updated_at = now(),"
    " message = %(message)s"
    "   || to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " WHERE (status = 'INITIALIZED' AND expires_at <= COALESCE(%(now)s, now()))"
    "    OR (status = 'RUNNING' AND expires_at <="
    "        COALESCE(%(now)s, now()) - make_interval(secs => %(grace)s))"
    f" RETURNING {JOB_COLUMNS}"
)

# An attempt's success, or EXPIRED when the deadline passed first (by the database's
# clock, as _end_attempt decides it); the lease must still hold unless it expires.
_COMPLETE = (
    "UPDATE jobs SET"
    " status = CASE WHEN expires_at <= now() THEN 'EXPIRED' ELSE 'COMPLETED' END,"
    " result = CASE WHEN expires_at <= now() THEN result ELSE %(result)s END,"
    " result_location = CASE WHEN expires_at <= now() THEN result_location"
    "   ELSE %(location)s END,"
    " progress = CASE WHEN expires_at <= now() THEN progress ELSE 1.0 END,"
    " message = CASE WHEN expires_at <= now() THEN %(expired)s ELSE '' END,"
    " finished_at = now(), updated_at = now(),"
    " lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL"
    " WHERE id = %(id)s AND lease_id = %(lease)s AND status = 'RUNNING'"
    "   AND (expires_at <= now() OR lease_expires_at >= now())"
    f" RETURNING {JOB_COLUMNS}"
)

# Batches with SKIP LOCKED: purging never holds many locks, nor waits on busy rows.
_PURGE = (
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at < %s"
    " AND status IN ('COMPLETED', 'ERROR', 'ABORTED', 'EXPIRED') LIMIT %s FOR UPDATE SKIP LOCKED)"
)


# The status poll's token and job status in one round trip: the token's columns
# renamed beside the job's, the job left NULL where the token may not see it.
# Each lookup's token (if live) and, if that token may see it, its job's status, by
# the lookup's position (from 1) in the arrays.
_TOKENS_AND_STATUSES = (
    "SELECT k.lookup, t.id AS token_id, t.tenant AS token_tenant,"
    " t.is_admin AS token_is_admin, t.created_at AS token_created_at,"
    " t.last_used_at AS token_last_used_at, t.revoked_at AS token_revoked_at, "
    + qualified(STATUS_COLUMNS, "j") +
    " FROM unnest(%s::text[], %s::uuid[]) WITH ORDINALITY AS k(secret_hash, job_id, lookup)"
    " JOIN tokens t ON t.secret_hash = k.secret_hash AND t.revoked_at IS NULL"
    " LEFT JOIN jobs j ON j.id = k.job_id AND (t.is_admin OR j.tenant = t.tenant)"
)


def _with_keepalives(url: str) -> str:
    given = conninfo_to_dict(url)
    return make_conninfo(url, **{key: value for key, value in KEEPALIVES.items()
                                 if key not in given})


async def _earlier_submission(conn: Conn, new: NewJob) -> SubmitOutcome | None:
    """The job an earlier submit with `new`'s Idempotency-Key made, if any; a different
    request under the same key is an IdempotencyConflict."""
    earlier = await _one(conn, f"SELECT {JOB_COLUMNS}, request_hash FROM jobs"
                         " WHERE tenant = %s AND idempotency_key = %s",
                         (new.tenant, new.idempotency_key))
    if earlier is None:
        return None
    if earlier["request_hash"] != new.request_hash:
        raise IdempotencyConflict(new.idempotency_key or "")
    return SubmitOutcome(job_from_row(earlier), created=False)


async def _one(conn: Conn, query: Any, params: Any) -> Row | None:
    return await (await conn.execute(query, params)).fetchone()


def _required(row: Row | None) -> Row:
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


def _list_filter(query: JobQuery) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if query.tenant is not None:
        clauses.append(sql.SQL("tenant = %s"))
        params.append(query.tenant)
    if query.statuses:
        clauses.append(sql.SQL("status = ANY(%s)"))
        params.append([state.value for state in query.statuses])
    if query.job_type is not None:
        clauses.append(sql.SQL("job_type = %s"))
        params.append(query.job_type)
    if not clauses:
        return sql.SQL(""), params
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses), params


def _placeholder(value: Any) -> str:
    if isinstance(value, Now):
        return "now()"
    if isinstance(value, NowPlus):
        return "now() + make_interval(secs => %s)"
    return "%s"


def _parameters(values: Collection[Any]) -> list[Any]:
    """The values behind `_placeholder`s, in order."""
    return [value.seconds if isinstance(value, NowPlus) else value
            for value in values if not isinstance(value, Now)]


@functools.lru_cache(maxsize=256)
def _update_statement(shape: tuple[tuple[str, str], ...], extra_condition: str) -> str:
    """UPDATE ... RETURNING for one set of (column, placeholder) pairs. Composed once per
    shape: composing costs more than the round trip on a quiet database."""
    assignments = sql.SQL(", ").join(sql.SQL("{} = " + placeholder).format(sql.Identifier(column))
                                     for column, placeholder in shape)
    return sql.SQL("UPDATE jobs SET {} WHERE id = %s AND status = %s" + extra_condition
                   + f" RETURNING {JOB_COLUMNS}").format(assignments).as_string(None)


async def _update_one(
    conn: Conn, job_id: UUID, current: JobState, target: JobState, fields: dict[str, Any],
    extra_condition: str = "", extra_params: tuple[Any, ...] = (),
) -> Job:
    """The one compare-and-set every state change goes through."""
    if target is not current:
        check_transition(current, target)
    assignments = {**fields, "status": target.value, "updated_at": NOW}
    if target.is_terminal or target is JobState.INITIALIZED:
        assignments.update(lease_id=None, lease_owner=None, lease_expires_at=None)
    shape = tuple((column, _placeholder(value)) for column, value in assignments.items())
    row = await _one(conn, _update_statement(shape, extra_condition),
                     [*_parameters(assignments.values()), job_id, current.value, *extra_params])
    if row is None:
        raise await _lost_race(conn, job_id, target)
    return job_from_row(row)


async def _lost_race(conn: Conn, job_id: UUID, target: JobState) -> Exception:
    row = await _one(conn, "SELECT status FROM jobs WHERE id = %s", (job_id,))
    if row is None:
        return JobNotFound(job_id)
    return IllegalTransition(row["status"], target.value)


async def _update_leased(
    conn: Conn, lease: Lease, target: JobState, fields: dict[str, Any], *,
    require_live_lease: bool,
) -> Job:
    """A change made by the worker holding `lease`: LeaseLost if it no longer does.

    A job that would go back to the queue (a retry, a release) while an abort
    is pending is ABORTED instead: its handler has stopped, and the abort wins.
    """
    if target is JobState.INITIALIZED:
        row = await _one(conn, "SELECT abort_reason FROM jobs WHERE id = %s AND lease_id = %s"
                         " AND status = 'RUNNING' FOR UPDATE", (lease.job_id, lease.lease_id))
        target, instead = rules.requeue_target(None if row is None else row["abort_reason"])
        if instead is not None:
            fields = {"message": instead, "finished_at": NOW}
    condition = " AND lease_id = %s" + (" AND lease_expires_at >= now()"
                                        if require_live_lease else "")
    try:
        return await _update_one(conn, lease.job_id, JobState.RUNNING, target, fields,
                                 condition, (lease.lease_id,))
    except (IllegalTransition, JobNotFound) as exc:
        raise LeaseLost(lease.job_id) from exc


async def _end_attempt(conn: Conn, lease: Lease, target: JobState,
                       fields: dict[str, Any]) -> Job:
    """Record an attempt's outcome, unless the deadline passed first: then EXPIRED."""
    row = await _one(conn, "SELECT expires_at <= now() AS overdue FROM jobs WHERE id = %s"
                     " AND lease_id = %s AND status = 'RUNNING' FOR UPDATE",
                     (lease.job_id, lease.lease_id))
    if row is not None and row["overdue"]:
        return await _update_leased(conn, lease, JobState.EXPIRED, {
            "message": rules.EXPIRED_AT_OUTCOME, "finished_at": NOW},
            require_live_lease=False)
    return await _update_leased(conn, lease, target, fields, require_live_lease=True)


async def _take_back(conn: Conn, job: Job, retry_delay_seconds: float) -> Job:
    """A lapsed lease: the worker is presumed dead and its attempt over."""
    target, message = rules.reclaim(job, retry_delay_seconds)
    fields: dict[str, Any] = {"message": message}
    if target is JobState.INITIALIZED:
        fields["run_after"] = NowPlus(retry_delay_seconds)
    else:
        fields["finished_at"] = NOW
    return await _update_one(conn, job.id, JobState.RUNNING, target, fields,
                             " AND lease_id = %s", (job.lease_id,))


async def _check_if_disturbed(conn: Conn) -> None:
    """The pool's check on checkout, without a round trip in the common case.

    An idle connection has nothing to read. If its socket is readable, the
    server said something unasked (a FATAL on shutdown) or closed it: only
    then is it checked for real, and a broken one is discarded by the pool.
    A full check on every checkout would cost a round trip per query
    (docs/explanation/postgres-driver.md measures it).
    """
    if conn.closed or _readable(conn.pgconn.socket):
        await AsyncConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the configured URL"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
