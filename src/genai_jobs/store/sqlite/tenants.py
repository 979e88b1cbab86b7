"""Tenants on SQLite: fair claims, the limits an admin sets, and their checks.

A claim takes, among the tenants with runnable jobs, each one's head (highest
priority, then oldest) and starts the head of highest priority whose tenant runs
the fewest jobs, so a tenant that queued thousands of jobs cannot keep another
tenant's job waiting for more than the next free worker slot. SQLite has one
writer at a time, so counts read inside the write transaction are exact: no
limit can be overshot by concurrent claims or submits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from genai_jobs.domain import TenantLimits
from genai_jobs.domain.tenants import DEFAULTS_TENANT, effective_limits, rate_window

# Each step of the walk over tenants with queued jobs is one probe of
# jobs_queued_by_tenant, however many jobs a tenant queued.
_HEADS = """
WITH RECURSIVE queued(tenant) AS (
    SELECT MIN(tenant) FROM jobs WHERE status = 'INITIALIZED'
    UNION ALL
    SELECT (SELECT MIN(j.tenant) FROM jobs j WHERE j.status = 'INITIALIZED'
            AND j.tenant > queued.tenant)
    FROM queued WHERE queued.tenant IS NOT NULL
),
heads AS MATERIALIZED (
    SELECT q.tenant, (SELECT id FROM jobs WHERE tenant = q.tenant AND status = 'INITIALIZED'
                      AND run_after <= :now AND expires_at > :now AND job_type IN ({types})
                      ORDER BY priority DESC, created_at LIMIT 1) AS id
    FROM queued q WHERE q.tenant IS NOT NULL
)
SELECT heads.tenant, heads.id, jobs.priority, jobs.created_at,
       (SELECT COUNT(*) FROM jobs r WHERE r.tenant = heads.tenant
        AND r.status = 'RUNNING') AS running,
       COALESCE(own.max_running, dflt.max_running) AS max_running
FROM heads JOIN jobs ON jobs.id = heads.id
LEFT JOIN tenant_limits own ON own.tenant = heads.tenant
LEFT JOIN tenant_limits dflt ON dflt.tenant = '*'
"""


def fairest_head(conn: sqlite3.Connection, job_types: Sequence[str], now: float) -> str | None:
    """The id of the job a claim should start now, if any."""
    marks = ", ".join(f":type{index}" for index in range(len(job_types)))
    params: dict[str, object] = {"now": now}
    params.update({f"type{index}": name for index, name in enumerate(job_types)})
    best: tuple[int, int, float] | None = None
    chosen: str | None = None
    for row in conn.execute(_HEADS.format(types=marks), params):
        if row["max_running"] is not None and row["running"] >= row["max_running"]:
            continue
        rank = (-row["priority"], row["running"], row["created_at"])
        if best is None or rank < best:
            best, chosen = rank, row["id"]
    return chosen


def limits_of(conn: sqlite3.Connection, tenant: str) -> TenantLimits:
    rows = {row.tenant: row for row in _read(conn, "WHERE tenant IN (?, ?)",
                                             (tenant, DEFAULTS_TENANT))}
    return effective_limits(tenant, rows.get(tenant), rows.get(DEFAULTS_TENANT))


def submit_counts(conn: sqlite3.Connection, limits: TenantLimits,
                  now: float) -> tuple[int, list[float]]:
    """(queued jobs, creation times inside the rate window oldest first) of a tenant,
    for `domain.tenants.submit_refusal`."""
    queued = 0
    if limits.max_queued is not None:
        queued = conn.execute("SELECT COUNT(*) FROM jobs WHERE tenant = ?"
                              " AND status = 'INITIALIZED'", (limits.tenant,)).fetchone()[0]
    recent: list[float] = []
    if limits.submits_per_second is not None:
        window = rate_window(limits.submits_per_second)[0]
        recent = [row[0] for row in conn.execute(
            "SELECT created_at FROM jobs WHERE tenant = ? AND created_at > ?"
            " ORDER BY created_at", (limits.tenant, now - window))]
    return int(queued), recent


def read_limits(conn: sqlite3.Connection) -> list[TenantLimits]:
    return _read(conn, "", ())


def write_limits(conn: sqlite3.Connection, limits: TenantLimits, now: float) -> None:
    if limits.is_empty:
        conn.execute("DELETE FROM tenant_limits WHERE tenant = ?", (limits.tenant,))
        return
    conn.execute(
        "INSERT INTO tenant_limits (tenant, max_running, max_queued, submits_per_second,"
        " max_priority, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE"
        " SET max_running = excluded.max_running, max_queued = excluded.max_queued,"
        " submits_per_second = excluded.submits_per_second,"
        " max_priority = excluded.max_priority, updated_at = excluded.updated_at",
        (limits.tenant, limits.max_running, limits.max_queued, limits.submits_per_second,
         limits.max_priority, now))


def read_usage(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """(queued, running) jobs of every tenant that has some."""
    rows = conn.execute(
        "SELECT tenant, SUM(status = 'INITIALIZED'), SUM(status = 'RUNNING') FROM jobs"
        " WHERE status IN ('INITIALIZED', 'RUNNING') GROUP BY tenant").fetchall()
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def _read(conn: sqlite3.Connection, where: str,
          params: tuple[str, ...] | tuple[()]) -> list[TenantLimits]:
    rows = conn.execute(
        "SELECT tenant, max_running, max_queued, submits_per_second, max_priority, updated_at"
        f" FROM tenant_limits {where} ORDER BY tenant", params).fetchall()
    return [TenantLimits(tenant=row["tenant"], max_running=row["max_running"],
                         max_queued=row["max_queued"],
                         submits_per_second=row["submits_per_second"],
                         max_priority=row["max_priority"],
                         updated_at=datetime.fromtimestamp(row["updated_at"], UTC))
            for row in rows]
