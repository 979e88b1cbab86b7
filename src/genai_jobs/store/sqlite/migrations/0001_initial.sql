-- Jobs, tokens and the change counter that lets other processes see commits.
-- Times are Unix seconds (REAL, UTC).

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    tenant            TEXT NOT NULL,
    job_type          TEXT NOT NULL,
    payload           TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL CHECK (status IN
                        ('INITIALIZED', 'RUNNING', 'COMPLETED', 'ERROR', 'ABORTED', 'EXPIRED')),
    message           TEXT NOT NULL DEFAULT '',
    result            TEXT,
    result_location   TEXT,
    progress          REAL,
    progress_message  TEXT NOT NULL DEFAULT '',
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL CHECK (max_attempts >= 1),
    priority          INTEGER NOT NULL DEFAULT 0,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL,
    expires_at        REAL NOT NULL,
    run_after         REAL NOT NULL,
    abort_reason      TEXT,           -- set when an abort of a RUNNING job is requested
    lease_id          TEXT,
    lease_owner       TEXT,
    lease_expires_at  REAL,
    idempotency_key   TEXT,
    request_hash      TEXT,
    change_seq        INTEGER NOT NULL
);

-- Claims: highest priority first, then oldest, among queued jobs only.
CREATE INDEX jobs_runnable ON jobs (priority DESC, created_at) WHERE status = 'INITIALIZED';
-- Listings, newest first, per tenant and for admins.
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at DESC);
CREATE INDEX jobs_created ON jobs (created_at DESC);
-- Maintenance: lapsed leases, missed deadlines, retention.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX jobs_open_deadline ON jobs (expires_at) WHERE status IN ('INITIALIZED', 'RUNNING');
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Change feed for other processes.
CREATE INDEX jobs_change_seq ON jobs (change_seq);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    secret_hash   TEXT NOT NULL UNIQUE,
    created_at    REAL NOT NULL,
    last_used_at  REAL,
    revoked_at    REAL
);

CREATE TABLE change_counter (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL
);
INSERT INTO change_counter (id, seq) VALUES (1, 0);
