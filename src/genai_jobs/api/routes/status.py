"""The seed: `GET` and `DELETE /api/v2/genai/status/{statusId}/`; and DataRobot's classic
status route `/api/v2/status/{statusId}/`, which sends a finished job's client on to
what the job made.

The two GET routes answer the same body and differ only in status codes, because
DataRobot's SDK reads them differently: `JobStatus.get` follows redirects on the
seed route (so it always answers 200), and `wait_for_async_resolution` polls the
classic route with redirects off, taking `303 See Other` as done, a status starting
`error` or `abort` as failed, and polling anything else until its own time-out. So
the classic route answers 303 to the created resource once COMPLETED, and `410 Gone`
once EXPIRED (the SDK raises ClientError at once with the body, which says EXPIRED,
instead of polling a job that can never finish); other states are 200.
"""

from __future__ import annotations

from typing import Annotated, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field, TypeAdapter, ValidationError

from genai_jobs.api.deps import CallerDep, ServicesDep, authenticate, get_services_now
from genai_jobs.api.errors import PayloadRejected, validation_items
from genai_jobs.api.longpoll import seen_tag, status_fields, wait_for_change
from genai_jobs.api.openapi import API_ERRORS, errors
from genai_jobs.api.schemas import StatusResponse, status_body
from genai_jobs.api.urls import base_url, job_url
from genai_jobs.domain import Job, JobState, JobStatus

T = TypeVar("T")

# What `Retry-After` suggests while a job is not terminal, in seconds.
RETRY_AFTER_SECONDS = 1
MAX_WAIT_SECONDS = 60

router = APIRouter(tags=["Jobs (GenAI)"], responses=API_ERRORS)
classic = APIRouter(tags=["Status"], responses=API_ERRORS)


def status_headers(job: Job | JobStatus, request: Request,
                   behind_proxy: bool) -> dict[str, str]:
    tag = {"ETag": status_fields.tag(job)}
    if not job.is_terminal:
        return {"Retry-After": str(RETRY_AFTER_SECONDS), **tag}
    if job.status is JobState.COMPLETED:
        location = job.result_location or job_url(base_url(request, behind_proxy), job.id)
        return {"Location": location, **tag}
    return tag


WaitSeconds = Annotated[int, Query(
    alias="waitSeconds", ge=0, le=MAX_WAIT_SECONDS,
    description="While the job is not terminal, hold the answer until its status changes "
                "or this many seconds pass.",
)]

_STATUS_ID = TypeAdapter(UUID)
_WAIT_SECONDS = TypeAdapter(Annotated[int, Field(ge=0, le=MAX_WAIT_SECONDS)])
_STATUS_ID_PARAMETER = {
    "name": "statusId", "in": "path", "required": True,
    "description": "The ID of the job to retrieve the status for.",
    "schema": {"type": "string", "format": "uuid", "title": "Statusid"},
}
_IF_NONE_MATCH_PARAMETER = {
    "name": "If-None-Match", "in": "header", "required": False,
    "description": "The `ETag` of the last answer seen: with `waitSeconds`, a job that "
                   "changed since is answered at once instead of at its next change.",
    "schema": {"type": "string"},
}
_WAIT_SECONDS_PARAMETER = {
    "name": "waitSeconds", "in": "query", "required": False,
    "description": "While the job is not terminal, hold the answer until its status changes "
                   "or this many seconds pass.",
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0},
}


@router.get(
    "/status/{statusId}/",
    response_model=None,
    responses={200: {"model": StatusResponse, "description": "Successful Response"},
               **errors(404)},
    summary="Retrieve the execution status of a GenAI worker job.",
    openapi_extra={"parameters": [_STATUS_ID_PARAMETER, _WAIT_SECONDS_PARAMETER,
                                  _IF_NONE_MATCH_PARAMETER],
                   "security": [{"BearerAuth": []}]},
)
async def get_status(request: Request) -> Response:
    # The hottest route: parameters, auth and the body are handled here directly
    # rather than by FastAPI's dependency and response-model machinery, which
    # would cost more than the work itself (bench/ measures it). The answer is
    # the same: StatusResponse's seven fields, errors in the seed's shapes.
    job, headers = await _status_of(request)
    return Response(status_body(job), media_type="application/json", headers=headers)


async def _status_of(request: Request) -> tuple[Job, dict[str, str]]:
    """The job a status GET asks about (after its `waitSeconds`), and its headers."""
    services = get_services_now(request)
    caller = await authenticate(request, services)
    status_id = _parse(_STATUS_ID, request.path_params["statusId"], ("path", "statusId"))
    wait = request.query_params.get("waitSeconds")
    seconds = 0 if wait is None else _parse(_WAIT_SECONDS, wait, ("query", "waitSeconds"))
    read_at = services.store.changes.tick
    job = await services.store.get(status_id, caller.tenant_scope)
    job = await wait_for_change(services.store, job,
                                min(seconds, services.settings.max_wait_seconds), status_fields,
                                request.receive, seen_tag(request.headers.get("if-none-match")),
                                read_at)
    return job, status_headers(job, request, services.settings.behind_proxy)


@classic.get(
    "/status/{statusId}/",
    response_model=None,
    responses={200: {"model": StatusResponse, "description": "Not finished, failed, aborted, "
                     "or completed without a resource to show"},
               303: {"description": "COMPLETED: `Location` is what the job made"},
               410: {"model": StatusResponse, "description": "EXPIRED"},
               **errors(404)},
    summary="DataRobot's classic status route: 303 to the result once COMPLETED.",
    openapi_extra={"parameters": [_STATUS_ID_PARAMETER, _WAIT_SECONDS_PARAMETER],
                   "security": [{"BearerAuth": []}]},
)
async def get_classic_status(request: Request) -> Response:
    job, headers = await _status_of(request)
    return Response(status_body(job), status_code=classic_status_code(job),
                    media_type="application/json", headers=headers)


def classic_status_code(job: Job) -> int:
    if job.status is JobState.COMPLETED and job.result_location is not None:
        return 303
    if job.status is JobState.EXPIRED:
        return 410
    return 200


def _parse(adapter: TypeAdapter[T], value: str, loc: tuple[str, str]) -> T:
    try:
        return adapter.validate_strings(value)
    except ValidationError as exc:
        raise PayloadRejected(validation_items(exc.errors(), loc)) from exc


@classic.delete("/status/{statusId}/", response_model=StatusResponse, status_code=202,
                responses=errors(404, 409), summary="Abort a job (as the seed route does).")
@router.delete(
    "/status/{statusId}/",
    response_model=StatusResponse,
    status_code=202,
    responses=errors(404, 409),
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
