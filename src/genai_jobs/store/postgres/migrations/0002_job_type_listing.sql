-- Listings filtered by job type (`GET /jobs/?jobType=...`), newest first, per tenant.
CREATE INDEX jobs_tenant_type_created ON jobs (tenant, job_type, created_at DESC, id DESC);
