"""The HTTP shapes: camelCase pydantic models, built from domain records.

Times are UTC datetimes, which pydantic writes in ISO 8601 ending in `Z`.
Schema names follow the seed document (StatusResponse, JobErrorCode,
JobExecutionState, HTTPValidationErrorResponse, ValidationError), so that
generated clients and the OpenAPI document read like DataRobot's.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any
from uuid import UUID

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt
from pydantic.alias_generators import to_camel

from genai_jobs.domain import Job, JobStatus

MAX_DESCRIPTION_CHARS = 1000


class JobExecutionState(StrEnum):
    """Possible job states. Values match the DataRobot Status API."""

    INITIALIZED = "INITIALIZED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    EXPIRED = "EXPIRED"


class JobErrorCode(IntEnum):
    """Possible job error codes. This enum exists for consistency with the DataRobot Status API."""

    NO_ERROR = 0
    GENERIC_ERROR = 1


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class StatusResponse(CamelModel):
    """API response object for job execution status."""

    code: JobErrorCode = Field(description="The error code associated with the job.")
    created: datetime = Field(description="The creation date of the job (ISO 8601 formatted).")
    description: str = Field(default="", description="The description associated with the job.")
    message: str = Field(default="", description="The error message associated with the job.")
    status: JobExecutionState = Field(description="The execution status of the job.")
    status_id: UUID = Field(description="ID that can be used with GET /api/v2/status/{statusId}/ "
                                        "to poll for the testing job's status.")
    status_type: str = Field(default="", description="The type of the status object.")

    @classmethod
    def from_job(cls, job: Job) -> StatusResponse:
        return cls(**_status_fields(job))


def iso_utc(moment: datetime) -> str:
    """A UTC time as pydantic writes it: ISO 8601, `Z`, microseconds when there are any."""
    return moment.isoformat().replace("+00:00", "Z")


def status_body(job: Job | JobStatus) -> bytes:
    """StatusResponse's JSON for `job`, written directly: the status route's hot path."""
    return orjson.dumps({
        "code": job.code,
        "created": iso_utc(job.created_at),
        "description": job.description,
        "message": job.message,
        "status": job.status.value,
        "statusId": str(job.id),
        "statusType": job.job_type,
    })


class JobResponse(StatusResponse):
    """A job with everything known about it."""

    job_type: str
    tenant: str
    payload: dict[str, Any]
    result: Any = None
    result_location: str | None = None
    progress: float | None = Field(default=None, ge=0, le=1)
    progress_message: str = ""
    attempts: int
    max_attempts: int
    priority: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime
    updated_at: datetime

    @classmethod
    def from_job(cls, job: Job) -> JobResponse:
        return cls(
            **_status_fields(job),
            job_type=job.job_type,
            tenant=job.tenant,
            payload=job.payload,
            result=job.result,
            result_location=job.result_location,
            progress=job.progress,
            progress_message=job.progress_message,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            priority=job.priority,
            started_at=job.started_at,
            finished_at=job.finished_at,
            expires_at=job.expires_at,
            updated_at=job.updated_at,
        )


def job_body(job: Job) -> bytes:
    """JobResponse's JSON for `job`: what the job route and its fast path answer."""
    return JobResponse.from_job(job).model_dump_json(by_alias=True).encode()


def _status_fields(job: Job) -> dict[str, Any]:
    return {
        "code": JobErrorCode(job.code),
        "created": job.created_at,
        "description": job.description,
        "message": job.message,
        "status": JobExecutionState(job.status.value),
        "status_id": job.id,
        "status_type": job.job_type,
    }


class JobListResponse(CamelModel):
    count: int
    next: str | None
    previous: str | None
    data: list[JobResponse]
    total_count: int


def _within_64_bits(value: Any) -> Any:
    """Refuse integers JSON tools and databases cannot keep (beyond signed 64 bits)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            raise ValueError("integers must fit in 64 bits")
    return value


class SubmitRequest(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid")

    job_type: str = Field(min_length=1, max_length=200)
    payload: Annotated[dict[str, Any], AfterValidator(_within_64_bits)] = Field(
        default_factory=dict)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)
    # Numbers are JSON numbers of their kind: `"5"`, `true` or `1.0` for an integer is
    # refused (422), not read as 5, 1 or 1 (the seed's 422 shape suggests a strict API).
    expires_in: StrictFloat | None = Field(default=None, gt=0, description="Seconds from "
                                           "submission to the deadline by which the job must "
                                           "be terminal.")
    max_attempts: StrictInt | None = Field(default=None, ge=1)
    priority: StrictInt = Field(default=0, ge=-1_000_000, le=1_000_000,
                                description="Higher runs first.")


class JobTypeResponse(CamelModel):
    name: str
    description: str
    payload_schema: dict[str, Any]
    attempt_timeout_seconds: float | None
    available: bool = True
    unavailable_reason: str | None = None


class JobTypeListResponse(CamelModel):
    count: int
    data: list[JobTypeResponse]


class VersionResponse(CamelModel):
    major: int
    minor: int
    version_string: str
    released_version: str


class ValidationError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationErrorResponse(BaseModel):
    detail: list[ValidationError]


class ErrorResponse(BaseModel):
    detail: str
