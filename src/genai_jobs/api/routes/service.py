"""Routes for operators and orchestrators: no authentication."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from genai_jobs import metrics
from genai_jobs.api.deps import Services, ServicesDep
from genai_jobs.domain import StoreUnavailable

router = APIRouter(tags=["Service"])


@router.get("/healthz", summary="The process is alive.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The store is reachable and migrated.",
            responses={503: {"description": "Not ready"}})
async def readyz(services: ServicesDep) -> Response:
    try:
        await services.store.check_ready()
    except StoreUnavailable as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics.", response_class=Response)
async def prometheus_metrics(services: ServicesDep) -> Response:
    for state, count in (await services.store.count_by_state()).items():
        metrics.JOBS_BY_STATE.labels(state.value).set(count)
    await _refresh_tenant_gauges(services)
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def _refresh_tenant_gauges(services: Services) -> None:
    """Limits and queue lengths per tenant as the store has them now; tenants that
    left (no jobs, no limits) drop out instead of showing their last value."""
    metrics.TENANT_LIMIT.clear()
    for limits in await services.store.list_tenant_limits():
        for name in ("max_running", "max_queued", "submits_per_second", "max_priority"):
            value = getattr(limits, name)
            if value is not None:
                metrics.TENANT_LIMIT.labels(limits.tenant, name).set(value)
    metrics.TENANT_JOBS.clear()
    for tenant, (queued, running) in (await services.store.tenant_usage()).items():
        metrics.TENANT_JOBS.labels(tenant, "queued").set(queued)
        metrics.TENANT_JOBS.labels(tenant, "running").set(running)
