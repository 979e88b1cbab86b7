"""Prometheus metrics of this process (served by `GET /metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_SECONDS_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)

JOBS_BY_STATE = Gauge(
    "genai_jobs_jobs", "Jobs in the store, by state.", ["state"], registry=REGISTRY
)
QUEUE_WAIT = Histogram(
    "genai_jobs_queue_wait_seconds", "Time from a job becoming runnable to a worker claiming it.",
    ["job_type"], buckets=_SECONDS_BUCKETS, registry=REGISTRY,
)
RUN_TIME = Histogram(
    "genai_jobs_attempt_seconds", "Duration of attempts, by outcome.",
    ["job_type", "outcome"], buckets=_SECONDS_BUCKETS, registry=REGISTRY,
)
ATTEMPTS_FINISHED = Counter(
    "genai_jobs_attempts_finished", "Attempts ended by this process's workers, by outcome.",
    ["job_type", "outcome"], registry=REGISTRY,
)
LEASES_RECLAIMED = Counter(
    "genai_jobs_leases_reclaimed", "Jobs taken back from workers whose lease lapsed.",
    registry=REGISTRY,
)
JOBS_EXPIRED = Counter(
    "genai_jobs_expired_by_sweep", "Jobs expired by the maintenance sweep.", registry=REGISTRY
)
JOBS_SUBMITTED = Counter(
    "genai_jobs_submitted", "Jobs accepted by this process's API.", ["job_type"],
    registry=REGISTRY,
)
LONGPOLL_WAKEUPS = Counter(
    "genai_jobs_longpoll_wakeups_total",
    "Times a waiting long-poll was woken by a change of its job.",
    registry=REGISTRY,
)
LONGPOLL_READS = Counter(
    "genai_jobs_longpoll_reads_total",
    "Reads of a job made for waiting long-polls (shared by all the job's waiters).",
    registry=REGISTRY,
)
WAITING_REQUESTS = Gauge(
    "genai_jobs_waiting_requests", "Long-poll requests waiting for a change.", registry=REGISTRY
)
TENANT_REFUSALS = Counter(
    "genai_jobs_tenant_limit_refusals_total",
    "Requests refused by this process because a tenant was at one of its limits.",
    ["tenant", "limit"], registry=REGISTRY,
)
TENANT_LIMIT = Gauge(
    "genai_jobs_tenant_limit",
    "Limits in force per tenant (the tenant '*' holds the defaults); unset limits absent.",
    ["tenant", "limit"], registry=REGISTRY,
)
TENANT_JOBS = Gauge(
    "genai_jobs_tenant_jobs", "Queued and running jobs per tenant.", ["tenant", "state"],
    registry=REGISTRY,
)
HEAVY_IN_FLIGHT = Gauge(
    "genai_jobs_heavy_requests_in_flight",
    "Big pages and uploads being served now, by kind.", ["kind"], registry=REGISTRY,
)
PAGES_SHARED = Counter(
    "genai_jobs_big_pages_shared_total",
    "Big pages answered with the reading of an identical request that waited with them.",
    registry=REGISTRY,
)
HEAVY_REFUSED = Counter(
    "genai_jobs_heavy_requests_refused_total",
    "Big pages and uploads refused with 503 after waiting too long for a slot.", ["kind"],
    registry=REGISTRY,
)
