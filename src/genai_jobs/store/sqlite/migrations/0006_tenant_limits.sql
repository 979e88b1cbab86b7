-- Per-tenant limits set by an admin (NULL: no limit); the tenant '*' holds the
-- defaults of tenants without a value of their own (domain/tenants.py).
CREATE TABLE tenant_limits (
    tenant              TEXT PRIMARY KEY,
    max_running         INTEGER CHECK (max_running >= 0),
    max_queued          INTEGER CHECK (max_queued >= 0),
    submits_per_second  REAL CHECK (submits_per_second > 0),
    max_priority        INTEGER CHECK (max_priority >= 0),
    updated_at          REAL NOT NULL
);

-- Fair claims walk the tenants that have queued jobs and take each one's head
-- (highest priority, then oldest); this index serves both steps, and a tenant's
-- queued count for its limit.
DROP INDEX jobs_runnable;
CREATE INDEX jobs_queued_by_tenant ON jobs (tenant, priority DESC, created_at)
    WHERE status = 'INITIALIZED';
-- A tenant's running jobs, counted by claims when it has a running limit.
CREATE INDEX jobs_running_by_tenant ON jobs (tenant) WHERE status = 'RUNNING';
