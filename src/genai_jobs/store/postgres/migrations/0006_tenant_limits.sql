-- Per-tenant limits set by an admin (NULL: no limit); the tenant '*' holds the
-- defaults of tenants without a value of their own (domain/tenants.py).
CREATE TABLE tenant_limits (
    tenant              text PRIMARY KEY,
    max_running         integer CHECK (max_running >= 0),
    max_queued          integer CHECK (max_queued >= 0),
    submits_per_second  double precision CHECK (submits_per_second > 0),
    max_priority        integer CHECK (max_priority >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Fair claims walk the tenants that have queued jobs and take each one's head
-- (highest priority, then oldest); this index serves both steps, and a tenant's
-- queued count for its limit.
DROP INDEX IF EXISTS jobs_runnable;
CREATE INDEX jobs_queued_by_tenant ON jobs (tenant, priority DESC, created_at)
    WHERE status = 'INITIALIZED';
-- A tenant's running jobs, counted by claims when it has a running limit.
CREATE INDEX jobs_running_by_tenant ON jobs (tenant) WHERE status = 'RUNNING';
