-- Jobs and tokens on PostgreSQL. Every committed change of a job that anyone
-- may wait for (anything but a lease renewal) is announced on the channel
-- `genai_jobs` as '<job id> <status>', by a trigger, whatever code made it.

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    tenant            text NOT NULL,
    job_type          text NOT NULL,
    payload           json NOT NULL,
    description       text NOT NULL DEFAULT '',
    status            text NOT NULL CHECK (status IN
                        ('INITIALIZED', 'RUNNING', 'COMPLETED', 'ERROR', 'ABORTED', 'EXPIRED')),
    message           text NOT NULL DEFAULT '',
    result            json,
    result_location   text,
    progress          double precision,
    progress_message  text NOT NULL DEFAULT '',
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    priority          integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    expires_at        timestamptz NOT NULL,
    run_after         timestamptz NOT NULL DEFAULT now(),
    abort_reason      text,
    lease_id          uuid,
    lease_owner       text,
    lease_expires_at  timestamptz,
    idempotency_key   text,
    request_hash      text
);

-- Claims: highest priority first, then oldest, among queued jobs only.
CREATE INDEX jobs_runnable ON jobs (priority DESC, created_at) WHERE status = 'INITIALIZED';
-- Listings, newest first, per tenant and for admins.
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
-- Maintenance: lapsed leases, missed deadlines, retention.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX jobs_open_deadline ON jobs (expires_at) WHERE status IN ('INITIALIZED', 'RUNNING');
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE tokens (
    id            uuid PRIMARY KEY,
    tenant        text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    secret_hash   text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE FUNCTION genai_jobs_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('genai_jobs', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_announce_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION genai_jobs_announce();
-- A lease renewal touches only lease_expires_at, not updated_at: no announcement.
CREATE TRIGGER jobs_announce_update AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION genai_jobs_announce();
