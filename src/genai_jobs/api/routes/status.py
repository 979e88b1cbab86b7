"""The seed: `GET` and `DELETE /api/v2/genai/status/{statusId}/`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from genai_jobs.api.deps import CallerDep, ServicesDep
from genai_jobs.api.longpoll import status_fields, wait_for_change
from genai_jobs.api.schemas import HTTPValidationErrorResponse, StatusResponse
from genai_jobs.api.urls import base_url, job_url
from genai_jobs.domain import Job, JobState

# What `Retry-After` suggests while a job is not terminal, in seconds.
RETRY_AFTER_SECONDS = 1
MAX_WAIT_SECONDS = 60

router = APIRouter(tags=["Jobs (GenAI)"])
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    422: {"model": HTTPValidationErrorResponse, "description": "Validation Error"},
}


def status_headers(job: Job, request: Request, behind_proxy: bool) -> dict[str, str]:
    if not job.is_terminal:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if job.status is JobState.COMPLETED:
        location = job.result_location or job_url(base_url(request, behind_proxy), job.id)
        return {"Location": location}
    return {}


WaitSeconds = Annotated[int, Query(
    alias="waitSeconds", ge=0, le=MAX_WAIT_SECONDS,
    description="While the job is not terminal, hold the answer until its status changes "
                "or this many seconds pass.",
)]


@router.get(
    "/status/{statusId}/",
    response_model=StatusResponse,
    responses=ERROR_RESPONSES,
    summary="Retrieve the execution status of a GenAI worker job.",
)
async def get_status(
    statusId: UUID,
    request: Request,
    response: Response,
    services: ServicesDep,
    caller: CallerDep,
    wait_seconds: WaitSeconds = 0,
) -> StatusResponse:
    job = await services.store.get(statusId, caller.tenant_scope)
    job = await wait_for_change(services.store, job, caller.tenant_scope,
                                min(wait_seconds, services.settings.max_wait_seconds),
                                status_fields)
    response.headers.update(status_headers(job, request, services.settings.behind_proxy))
    return StatusResponse.from_job(job)


@router.delete(
    "/status/{statusId}/",
    response_model=StatusResponse,
    status_code=202,
    responses=ERROR_RESPONSES,
    summary="Abort a GenAI worker job.",
)
async def abort_job(
    statusId: UUID,
    request: Request,
    response: Response,
    services: ServicesDep,
    caller: CallerDep,
) -> StatusResponse:
    job = await services.store.request_abort(statusId, caller.tenant_scope, caller.describe())
    response.headers.update(status_headers(job, request, services.settings.behind_proxy))
    return StatusResponse.from_job(job)
