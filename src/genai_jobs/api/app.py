"""The FastAPI application: routers, error mapping, limits."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from genai_jobs import __version__
from genai_jobs.api import errors
from genai_jobs.api.admission import HeavyRequestGate
from genai_jobs.api.deps import Services
from genai_jobs.api.fastpath import StatusFastPath
from genai_jobs.api.fastsubmit import SubmitFastPath
from genai_jobs.api.limits import BodySizeLimit
from genai_jobs.api.routes import job_types, jobs, not_served, service, status, tenants, version
from genai_jobs.api.urls import API_PREFIX
from genai_jobs.handlers import Registry
from genai_jobs.settings import Settings
from genai_jobs.store import Store
from genai_jobs.vectors import api as vectors_api


def _telemetry(enabled: bool) -> TelemetryConfig:
    return {"tracing": enabled, "metrics": enabled, "logs": enabled,
            "operation_spans": enabled}


def create_app(store: Store, registry: Registry, settings: Settings) -> FastAPI:
    """The HTTP API over an opened `store`; the caller owns the store's life cycle.
    Without the bounds on expensive requests: `create_asgi_app` puts them in front."""
    app = FastAPI(
        title="genai-jobs",
        version=__version__,
        description="Durable GenAI jobs behind DataRobot's GenAI job status API.",
        # FastAPI's native OpenTelemetry costs tens of microseconds a request even with
        # no exporter configured; /metrics serves what operators need unless asked.
        telemetry=_telemetry(settings.opentelemetry),
    )
    services = Services(store=store, registry=registry, settings=settings)
    app.state.services = services
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       per_route=vectors_api.body_limits())
    errors.install(app)
    app.include_router(status.router, prefix=API_PREFIX)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(job_types.router, prefix=API_PREFIX)
    app.include_router(tenants.router, prefix=API_PREFIX)
    app.include_router(version.router, prefix="/api/v2")
    app.include_router(status.classic, prefix="/api/v2")
    app.include_router(service.router)
    vectors_api.install(app, services)  # datasets, vector databases, search
    # Last: DataRobot's routes that are not served here take what no route above took.
    app.include_router(not_served.router, prefix="/api/v2")
    return app


def create_asgi_app(store: Store, registry: Registry, settings: Settings) -> ASGIApp:
    """What `serve` runs: the API with the fast paths of the status poll and the submit,
    and the bounds on expensive requests, in front of all of it, so that they skip the
    framework's middleware as well as its routing (a burst of big pages waits for its
    turn before any of it, and only the one reading of a group goes through it)."""
    app = create_app(store, registry, settings)
    services = app.state.services
    gated = HeavyRequestGate(app, max_heavy_pages=settings.max_concurrent_big_pages,
                             max_uploads=settings.max_concurrent_uploads,
                             upload_bytes_per_second=settings.upload_bytes_per_second or None,
                             page_bytes_per_second=settings.page_bytes_per_second or None,
                             queue_seconds=settings.busy_queue_seconds,
                             upload_paths=[path for _, path in vectors_api.body_limits()])
    return SubmitFastPath(StatusFastPath(gated, services=services), services=services)
