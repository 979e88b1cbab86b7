"""The job domain: states, records and errors. Imports only the standard library."""

from genai_jobs.domain.errors import (
    DomainError,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    LeaseLost,
    PriorityNotAllowed,
    StoreUnavailable,
    TenantLimitReached,
    TokenNotFound,
)
from genai_jobs.domain.records import (
    Job,
    JobPage,
    JobPageJson,
    JobQuery,
    JobStatus,
    Lease,
    NewJob,
    SubmitOutcome,
    TokenRecord,
)
from genai_jobs.domain.states import (
    TERMINAL_STATES,
    JobState,
    check_transition,
    error_code,
)
from genai_jobs.domain.tenants import TenantLimits

__all__ = [
    "TERMINAL_STATES",
    "DomainError",
    "IdempotencyConflict",
    "IllegalTransition",
    "Job",
    "JobNotFound",
    "JobPage",
    "JobPageJson",
    "JobQuery",
    "JobState",
    "JobStatus",
    "Lease",
    "LeaseLost",
    "NewJob",
    "PriorityNotAllowed",
    "StoreUnavailable",
    "SubmitOutcome",
    "TenantLimitReached",
    "TenantLimits",
    "TokenNotFound",
    "TokenRecord",
    "check_transition",
    "error_code",
]
