"""Tenants on PostgreSQL: fair claims, the limits an admin sets, and their checks.

A claim takes, among the tenants with runnable jobs, each one's head (highest
priority, then oldest) and starts the head of highest priority whose tenant runs
the fewest jobs, so a tenant that queued thousands of jobs cannot keep another
tenant's job waiting for more than the next free worker slot.

A tenant with a running limit is claimed for under a per-tenant advisory lock
with a fresh count, as are submits of a tenant with a queued or rate limit:
API replicas and workers on many machines then never overshoot a limit between
them. Tenants without limits take the one-statement paths, unlocked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from genai_jobs.domain import TenantLimits
from genai_jobs.domain.tenants import DEFAULTS_TENANT, effective_limits, rate_window
from genai_jobs.store.postgres.rows import JOB_COLUMNS, Row, qualified

Conn = AsyncConnection[DictRow]

# How long a process trusts the limits it read: an admin's change applies on every
# replica within this time, and a submit costs no extra round trip for it.
LIMITS_CACHE_SECONDS = 1.0
# Keys of the per-tenant advisory locks live in their own space.
_LOCK_SEED = 0x7465_6E61  # "tena"

# Each step of the walk over tenants with queued jobs is one index probe
# (jobs_queued_by_tenant), however many jobs a tenant queued.
_QUEUED_TENANTS = """
WITH RECURSIVE queued(tenant) AS (
    (SELECT tenant FROM jobs WHERE status = 'INITIALIZED' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant FROM jobs j WHERE j.status = 'INITIALIZED' AND j.tenant > q.tenant
            ORDER BY j.tenant LIMIT 1)
    FROM queued q WHERE q.tenant IS NOT NULL
),
running AS (
    SELECT tenant, count(*) AS n FROM jobs WHERE status = 'RUNNING' GROUP BY tenant
)"""

_HEAD = (
    "SELECT id, priority, created_at FROM jobs WHERE tenant = {tenant}"
    " AND status = 'INITIALIZED' AND run_after <= now() AND expires_at > now()"
    " AND job_type = ANY(%(types)s) ORDER BY priority DESC, created_at LIMIT 1"
    " FOR UPDATE SKIP LOCKED"
)

_TAKE = (
    "UPDATE jobs SET status = 'RUNNING', attempts = jobs.attempts + 1, message = '',"
    " lease_id = gen_random_uuid(), lease_owner = %(owner)s,"
    " lease_expires_at = now() + make_interval(secs => %(lease)s),"
    " started_at = COALESCE(jobs.started_at, now()), updated_at = now()"
)

# One autocommitted statement per claimed job: pick the fairest head and, unless
# its tenant has a running limit (then the caller claims it under the lock),
# start it. `picked_*` tell the caller which head won even when nothing started.
_CLAIM_FAIRLY = _QUEUED_TENANTS + """,
heads AS (
    SELECT head.id, head.priority, head.created_at, q.tenant, COALESCE(r.n, 0) AS running,
           COALESCE(own.max_running, dflt.max_running) AS max_running
    FROM queued q
    LEFT JOIN running r ON r.tenant = q.tenant
    LEFT JOIN tenant_limits own ON own.tenant = q.tenant
    LEFT JOIN tenant_limits dflt ON dflt.tenant = '*'
    CROSS JOIN LATERAL (""" + _HEAD.format(tenant="q.tenant") + """) head
    WHERE q.tenant IS NOT NULL AND q.tenant <> ALL(%(excluded)s)
      AND (COALESCE(own.max_running, dflt.max_running) IS NULL
           OR COALESCE(r.n, 0) < COALESCE(own.max_running, dflt.max_running))
),
picked AS (
    SELECT * FROM heads ORDER BY priority DESC, running, created_at LIMIT 1
),
claimed AS (
    """ + _TAKE + """ FROM picked
    WHERE jobs.id = picked.id AND picked.max_running IS NULL AND jobs.status = 'INITIALIZED'
    RETURNING """ + qualified(JOB_COLUMNS, "jobs") + """, jobs.lease_id AS claimed_lease
)
SELECT picked.tenant AS picked_tenant, picked.max_running AS picked_limit, claimed.*
FROM picked LEFT JOIN claimed ON true"""

_CLAIM_FOR_TENANT = (
    f"WITH head AS ({_HEAD.format(tenant='%(tenant)s')}) {_TAKE} FROM head"
    f" WHERE jobs.id = head.id RETURNING {qualified(JOB_COLUMNS, 'jobs')},"
    " jobs.lease_id AS claimed_lease"
)


async def claim_fairly(conn: Conn, owner: str, job_types: Collection[str],
                       lease_seconds: float, limit: int) -> list[Row]:
    """Up to `limit` claimed job rows (with `claimed_lease`), fairest first."""
    claimed: list[Row] = []
    excluded: list[str] = []
    params: dict[str, Any] = {"types": sorted(job_types), "owner": owner,
                              "lease": lease_seconds, "excluded": excluded}
    # Bounded: each round claims a job, or excludes a tenant found at its limit.
    for _ in range(2 * limit + 8):
        if len(claimed) >= limit:
            break
        row = await (await conn.execute(_CLAIM_FAIRLY, params)).fetchone()
        if row is None:
            break
        if row["claimed_lease"] is not None:
            claimed.append(row)
            continue
        taken = await _claim_limited(conn, row["picked_tenant"], row["picked_limit"], params)
        if taken is None:
            excluded.append(row["picked_tenant"])
        else:
            claimed.append(taken)
    return claimed


async def _claim_limited(conn: Conn, tenant: str, max_running: int,
                         params: dict[str, Any]) -> Row | None:
    """The tenant's head, started only if a fresh count under its lock allows."""
    async with conn.transaction():
        await lock_tenant(conn, tenant)
        running = await (await conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE tenant = %s AND status = 'RUNNING'",
            (tenant,))).fetchone()
        if running is None or running["n"] >= max_running:
            return None
        return await (await conn.execute(
            _CLAIM_FOR_TENANT, {**params, "tenant": tenant})).fetchone()


async def lock_tenant(conn: Conn, tenant: str) -> None:
    """Serialise, until the transaction ends, the limited work of one tenant."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))",
                       (tenant, _LOCK_SEED))


async def submit_counts(conn: Conn, limits: TenantLimits) -> tuple[int, list[float], float]:
    """(queued jobs, creation times inside the rate window oldest first, now) of a
    tenant, by the database clock, for `domain.tenants.submit_refusal`."""
    window = rate_window(limits.submits_per_second)[0] if limits.submits_per_second else 0.0
    row = await (await conn.execute(
        "SELECT extract(epoch FROM now()) AS now,"
        " (SELECT count(*) FROM jobs WHERE tenant = %(t)s AND status = 'INITIALIZED'"
        "   AND %(count_queued)s) AS queued,"
        " ARRAY(SELECT extract(epoch FROM created_at) FROM jobs WHERE tenant = %(t)s"
        "   AND %(window)s > 0 AND created_at > now() - make_interval(secs => %(window)s)"
        "   ORDER BY created_at) AS recent",
        {"t": limits.tenant, "count_queued": limits.max_queued is not None,
         "window": window})).fetchone()
    assert row is not None  # a SELECT without FROM has one row
    return int(row["queued"]), [float(when) for when in row["recent"]], float(row["now"])


class LimitsCache:
    """Every tenant's limits, re-read at most once a `LIMITS_CACHE_SECONDS`."""

    def __init__(self) -> None:
        self._rows: dict[str, TenantLimits] = {}
        self._read_at = float("-inf")

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    async def for_tenant(self, conn_factory: Callable[[], AbstractAsyncContextManager[Conn]],
                         tenant: str) -> TenantLimits:
        if time.monotonic() - self._read_at > LIMITS_CACHE_SECONDS:
            async with conn_factory() as conn:
                self._rows = {limits.tenant: limits for limits in await read_limits(conn)}
            self._read_at = time.monotonic()
        return effective_limits(tenant, self._rows.get(tenant), self._rows.get(DEFAULTS_TENANT))


async def read_limits(conn: Conn) -> list[TenantLimits]:
    rows = await (await conn.execute(
        "SELECT tenant, max_running, max_queued, submits_per_second, max_priority, updated_at"
        " FROM tenant_limits ORDER BY tenant")).fetchall()
    return [TenantLimits(**row) for row in rows]


async def write_limits(conn: Conn, limits: TenantLimits) -> None:
    if limits.is_empty:
        await conn.execute("DELETE FROM tenant_limits WHERE tenant = %s", (limits.tenant,))
        return
    await conn.execute(
        "INSERT INTO tenant_limits (tenant, max_running, max_queued, submits_per_second,"
        " max_priority) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant) DO UPDATE SET"
        " max_running = excluded.max_running, max_queued = excluded.max_queued,"
        " submits_per_second = excluded.submits_per_second,"
        " max_priority = excluded.max_priority, updated_at = now()",
        (limits.tenant, limits.max_running, limits.max_queued, limits.submits_per_second,
         limits.max_priority))


async def read_usage(conn: Conn) -> dict[str, tuple[int, int]]:
    """(queued, running) jobs of every tenant that has some."""
    rows = await (await conn.execute(
        "SELECT tenant, count(*) FILTER (WHERE status = 'INITIALIZED') AS queued,"
        " count(*) FILTER (WHERE status = 'RUNNING') AS running FROM jobs"
        " WHERE status IN ('INITIALIZED', 'RUNNING') GROUP BY tenant")).fetchall()
    return {row["tenant"]: (int(row["queued"]), int(row["running"])) for row in rows}
