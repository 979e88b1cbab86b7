"""A Python client for a genai-jobs server, blocking (`Client`) or asyncio (`AsyncClient`).

This package never imports the server: it speaks HTTP only, so it can be used
from machines that have nothing else of genai-jobs installed.
"""

from genai_jobs.client._async import AsyncClient
from genai_jobs.client._base import DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL
from genai_jobs.client._sync import Client
from genai_jobs.client.exceptions import (
    APIError,
    AuthenticationError,
    Conflict,
    FieldError,
    GenAIJobsError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
    TransportError,
    UnexpectedResponse,
    ValidationFailed,
    WaitTimeout,
)
from genai_jobs.client.models import JobInfo, JobList, JobState, JobTypeInfo, StatusInfo

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_URL",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "Conflict",
    "FieldError",
    "GenAIJobsError",
    "JobInfo",
    "JobList",
    "JobState",
    "JobTypeInfo",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "StatusInfo",
    "TooManyRequests",
    "TransportError",
    "UnexpectedResponse",
    "ValidationFailed",
    "WaitTimeout",
]
