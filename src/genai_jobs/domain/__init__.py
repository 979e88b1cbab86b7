"""The job domain: states, records and errors. Imports only the standard library."""

from genai_jobs.domain.errors import (
    DomainError,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    LeaseLost,
    StoreUnavailable,
    TokenNotFound,
)
from genai_jobs.domain.records import (
    Job,
    JobPage,
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

__all__ = [
    "TERMINAL_STATES",
    "DomainError",
    "IdempotencyConflict",
    "IllegalTransition",
    "Job",
    "JobNotFound",
    "JobPage",
    "JobQuery",
    "JobState",
    "JobStatus",
    "Lease",
    "LeaseLost",
    "NewJob",
    "StoreUnavailable",
    "SubmitOutcome",
    "TokenNotFound",
    "TokenRecord",
    "check_transition",
    "error_code",
]
