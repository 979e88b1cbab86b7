"""`GET /api/v2/genai/jobTypes/`: what can be submitted here."""

from __future__ import annotations

from fastapi import APIRouter

from genai_jobs.api.deps import CallerDep, ServicesDep
from genai_jobs.api.openapi import API_ERRORS
from genai_jobs.api.schemas import JobTypeListResponse, JobTypeResponse
from genai_jobs.handlers import JobType

# The module, not its function: vectors.deps imports the API's deps in turn.
from genai_jobs.vectors import deps as vectors_deps

router = APIRouter(tags=["Jobs (GenAI)"], responses=API_ERRORS)


@router.get("/jobTypes/", response_model=JobTypeListResponse, summary="List the job types.")
async def list_job_types(services: ServicesDep, caller: CallerDep) -> JobTypeListResponse:
    data = [_job_type(job_type, vectors_deps.unavailable_now(job_type))
            for job_type in services.registry]
    return JobTypeListResponse(count=len(data), data=data)


def _job_type(job_type: JobType, unavailable_reason: str | None) -> JobTypeResponse:
    return JobTypeResponse(
        name=job_type.name,
        description=job_type.description,
        payload_schema=job_type.payload_schema(),
        attempt_timeout_seconds=job_type.attempt_timeout,
        available=unavailable_reason is None,
        unavailable_reason=unavailable_reason,
    )
