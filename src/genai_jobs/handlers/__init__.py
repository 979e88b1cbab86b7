"""What users write: job types, their handlers and the context handlers receive."""

from genai_jobs.handlers.context import JobCancelled, JobContext, StopReason
from genai_jobs.handlers.registry import (
    Handler,
    JobType,
    PermanentError,
    Registry,
    ResultLocation,
    load_registry,
)

__all__ = [
    "Handler",
    "JobCancelled",
    "JobContext",
    "JobType",
    "PermanentError",
    "Registry",
    "ResultLocation",
    "StopReason",
    "load_registry",
]
