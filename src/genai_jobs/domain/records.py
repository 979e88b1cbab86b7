"""Immutable records that cross the store seam.

Stores build these from rows at their edge; the API builds its camelCase
schemas from them. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from genai_jobs.domain.states import JobState, error_code

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated submission, ready to be stored."""

    tenant: str
    job_type: str
    payload: JsonObject
    description: str
    expires_at: datetime
    max_attempts: int
    priority: int
    idempotency_key: str | None = None
    # A digest of the submission, compared when an idempotency key is reused.
    request_hash: str | None = None


class _Stated:
    """What a record with a `status` tells about it: the seed's error code, finality."""

    __slots__ = ()
    status: JobState

    @property
    def code(self) -> int:
        return error_code(self.status)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@dataclass(frozen=True, slots=True)
class Job(_Stated):
    id: UUID
    tenant: str
    job_type: str
    payload: JsonObject
    description: str
    status: JobState
    message: str
    result: Any
    result_location: str | None
    progress: float | None
    progress_message: str
    attempts: int
    max_attempts: int
    priority: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime
    run_after: datetime
    # Who asked to abort this RUNNING job, once someone has; its worker stops it.
    abort_reason: str | None
    lease_id: UUID | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None

    @property
    def abort_requested(self) -> bool:
        return self.abort_reason is not None


@dataclass(frozen=True, slots=True)
class JobStatus(_Stated):
    """The part of a job the status route shows (the seed's StatusResponse and its
    headers): what a status poll reads, without the payload and result."""

    id: UUID
    job_type: str
    description: str
    status: JobState
    message: str
    result_location: str | None
    created_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobStatus:
        return cls(job.id, job.job_type, job.description, job.status, job.message,
                   job.result_location, job.created_at)


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's exclusive, time-limited right to run one attempt of a job."""

    job: Job
    lease_id: UUID
    owner: str
    expires_at: datetime

    @property
    def job_id(self) -> UUID:
        return self.job.id


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    job: Job
    created: bool  # False when an Idempotency-Key returned an earlier job


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A page of one tenant's jobs (all tenants' when `tenant` is None), newest first."""

    tenant: str | None
    statuses: Sequence[JobState] = ()
    job_type: str | None = None
    offset: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    total_count: int


@dataclass(frozen=True, slots=True)
class JobPageJson:
    """A page of jobs as the API writes it: `data` is the JSON array of their
    documents (JobResponse's shape), written by the store's database."""

    data: bytes
    count: int
    total_count: int


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: UUID
    tenant: str
    is_admin: bool
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    name: str = field(default="")
