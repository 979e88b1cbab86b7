"""`/api/v2/genai/jobs/`: submit, list, and read one job in full."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError as PydanticValidationError

from genai_jobs import metrics
from genai_jobs.api.deps import CallerDep, Services, ServicesDep
from genai_jobs.api.errors import PayloadRejected, validation_items
from genai_jobs.api.longpoll import any_field, seen_tag, wait_for_change
from genai_jobs.api.openapi import API_ERRORS, errors
from genai_jobs.api.routes.status import WaitSeconds
from genai_jobs.api.schemas import (
    JobExecutionState,
    JobListResponse,
    JobResponse,
    StatusResponse,
    SubmitRequest,
    job_body,
    status_body,
)
from genai_jobs.api.urls import base_url, status_url
from genai_jobs.domain import JobQuery, JobState, NewJob

MAX_PAGE = 1000
# Past any real listing, and inside the 64-bit integers the stores take.
MAX_OFFSET = 10**12
MAX_IDEMPOTENCY_KEY_CHARS = 255

router = APIRouter(tags=["Jobs (GenAI)"], responses=API_ERRORS)


@router.post(
    "/jobs/",
    response_model=StatusResponse,
    status_code=202,
    summary="Submit a job.",
    responses={200: {"model": StatusResponse,
                     "description": "The job an earlier request with this Idempotency-Key made."},
               **errors(409, 413, 429)},
)
async def submit_job(
    body: SubmitRequest,
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS)] = None,
) -> Response:
    # serve answers most submits in api/fastsubmit.py before they get here; this
    # route answers the rest (and every error), with the same body and headers.
    new = new_job(body, caller.token.tenant, idempotency_key, services)
    outcome = await services.store.submit(new)
    if outcome.created:
        metrics.JOBS_SUBMITTED.labels(new.job_type).inc()
    location = status_url(base_url(request, services.settings.behind_proxy), outcome.job.id)
    return Response(status_body(outcome.job), status_code=202 if outcome.created else 200,
                    media_type="application/json", headers={"Location": location})


def new_job(body: SubmitRequest, tenant: str, idempotency_key: str | None,
             services: Services) -> NewJob:
    settings = services.settings
    job_type = services.registry.get(body.job_type)
    if job_type is None:
        known = ", ".join(sorted(services.registry.names()))
        raise PayloadRejected([{"loc": ["body", "jobType"], "type": "unknown_job_type",
                                "msg": f"unknown job type {body.job_type!r}; known: {known}"}])
    try:
        payload = job_type.payload_model.model_validate(body.payload)
    except PydanticValidationError as exc:
        raise PayloadRejected(validation_items(exc.errors(), ["body", "payload"])) from exc
    _check_limit(body.expires_in, settings.max_expires_in_seconds, "expiresIn")
    _check_limit(body.max_attempts, settings.max_max_attempts, "maxAttempts")
    expires_in = body.expires_in or settings.default_expires_in_seconds
    normalized = payload.model_dump(mode="json")
    return NewJob(
        tenant=tenant,
        job_type=body.job_type,
        payload=normalized,
        description=body.description,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        max_attempts=body.max_attempts or settings.default_max_attempts,
        priority=body.priority,
        idempotency_key=idempotency_key,
        request_hash=None if idempotency_key is None else _digest(body, normalized),
    )


def _check_limit(value: float | None, limit: float, field: str) -> None:
    if value is not None and value > limit:
        raise PayloadRejected([{"loc": ["body", field], "type": "less_than_equal",
                                "msg": f"Input should be less than or equal to {limit:g}"}])


def _digest(body: SubmitRequest, payload: dict[str, Any]) -> str:
    """The submission as it will be stored (payload defaults filled in), so that two
    spellings of the same job are the same request."""
    request = {**body.model_dump(mode="json"), "payload": payload}
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


@router.get("/jobs/", response_model=JobListResponse,
            summary="List the caller's jobs, newest first.")
async def list_jobs(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    status: Annotated[list[JobExecutionState] | None, Query()] = None,
    job_type: Annotated[str | None, Query(alias="jobType")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    query = JobQuery(
        tenant=caller.tenant_scope,
        statuses=[JobState(state.value) for state in status or ()],
        job_type=job_type,
        offset=offset,
        limit=limit,
    )
    page = await services.store.list_jobs_json(query)
    base = base_url(request, services.settings.behind_proxy)
    # The database wrote the items (store/job_json.py); only the envelope is ours.
    # Its fields are JobListResponse's, in its order.
    envelope = orjson.dumps({
        "count": page.count,
        "next": _page_url(request, base, offset + limit)
        if offset + page.count < page.total_count else None,
        "previous": _page_url(request, base, max(offset - limit, 0)) if offset > 0 else None,
    })
    total = orjson.dumps(page.total_count)
    body = b"".join((envelope[:-1], b',"data":', page.data, b',"totalCount":', total, b"}"))
    return Response(body, media_type="application/json")


def _page_url(request: Request, base: str, offset: int) -> str:
    url = request.url.include_query_params(offset=offset)
    return f"{base}{url.path}?{url.query}"


@router.get("/jobs/{statusId}/", response_model=JobResponse, summary="Read one job in full.",
            responses=errors(404))
async def get_job(
    statusId: UUID,
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    wait_seconds: WaitSeconds = 0,
    if_none_match: Annotated[str | None, Header(
        alias="If-None-Match", description="The `ETag` of the last answer seen: with "
        "`waitSeconds`, a job that changed since is answered at once.")] = None,
) -> Response:
    # serve answers most of these in api/fastpath.py before they get here (the
    # client's wait); this route answers the rest, with the same bytes.
    read_at = services.store.changes.tick
    job = await services.store.get(statusId, caller.tenant_scope)
    job = await wait_for_change(services.store, job,
                                min(wait_seconds, services.settings.max_wait_seconds), any_field,
                                request.receive, seen_tag(if_none_match), read_at)
    return Response(job_body(job), media_type="application/json",
                    headers={"ETag": any_field.tag(job)})

