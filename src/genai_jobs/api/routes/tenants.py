"""`/api/v2/genai/tenants/`: each tenant's limits and queue, set by an admin.

DataRobot has no route for this; the shapes follow ours (camelCase, `data` lists).
A tenant token sees its own tenant only; setting limits takes an admin token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic.alias_generators import to_camel

from genai_jobs.api.deps import Caller, CallerDep, ServicesDep
from genai_jobs.api.openapi import API_ERRORS, errors
from genai_jobs.domain import TenantLimits
from genai_jobs.domain.tenants import DEFAULTS_TENANT, limits_in_force
from genai_jobs.store import Store
from genai_jobs.tokens import tenant_name

router = APIRouter(tags=["Tenants"], responses=API_ERRORS)

# Any name a token may carry, or `*` for the defaults; may contain `/`.
TenantPath = Annotated[str, Path(description="A tenant's name, or `*` for every tenant's "
                                             "defaults.")]


class LimitsBody(BaseModel):
    """A tenant's limits; `null` or absent: no limit (the defaults' value applies)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid")

    max_running: StrictInt | None = Field(default=None, ge=0, le=1_000_000,
                                          description="Jobs of the tenant running at once.")
    max_queued: StrictInt | None = Field(default=None, ge=0, le=10**9,
                                         description="Jobs of the tenant waiting to start.")
    # A strict float takes an int too, never a string or a boolean. (`StrictFloat | StrictInt`
    # hid the bounds from the OpenAPI document: a union's `gt` and `le` are not JSON Schema.)
    submits_per_second: float | None = Field(
        default=None, strict=True, gt=0, le=1_000_000,
        description="Jobs the tenant may create per second, over a sliding window "
                    "(one second, or 1/rate seconds for rates below 1).")
    # Not below 0: a cap keeps a tenant from jumping the queue; below the default
    # priority it would refuse every plain submit (and every vector database build).
    max_priority: StrictInt | None = Field(default=None, ge=0, le=1_000_000,
                                           description="The highest priority it may submit.")

    @classmethod
    def of(cls, limits: TenantLimits) -> LimitsBody:
        return cls.model_validate({"maxRunning": limits.max_running,
                                   "maxQueued": limits.max_queued,
                                   "submitsPerSecond": limits.submits_per_second,
                                   "maxPriority": limits.max_priority})


class TenantResponse(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    tenant: str
    limits: LimitsBody = Field(description="The tenant's own limits, as an admin set them.")
    effective_limits: LimitsBody = Field(
        description="What applies: its own limits over the defaults (tenant `*`).")
    queued_jobs: int
    running_jobs: int


class TenantListResponse(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    data: list[TenantResponse]
    total_count: int


@router.get("/tenants/", response_model=TenantListResponse, response_model_by_alias=True,
            summary="Tenants with their limits and queues (an admin sees every tenant).")
async def list_tenants(services: ServicesDep, caller: CallerDep) -> TenantListResponse:
    found = await _tenants(services.store, caller)
    return TenantListResponse(data=found, total_count=len(found))


@router.get("/tenants/{tenant:path}/limits/", response_model=TenantResponse,
            response_model_by_alias=True, summary="One tenant's limits and queue.",
            responses=errors(404))
async def get_limits(tenant: TenantPath, services: ServicesDep,
                     caller: CallerDep) -> TenantResponse:
    name = _name(tenant)
    if caller.tenant_scope not in (None, name):
        raise HTTPException(404, f"tenant {name!r} not found")
    return next(entry for entry in await _tenants(services.store, caller, name))


@router.put("/tenants/{tenant:path}/limits/", response_model=TenantResponse,
            response_model_by_alias=True,
            summary="Replace a tenant's limits (admin). Limits left out are lifted.",
            responses=errors(403, 404))
async def set_limits(tenant: TenantPath, body: LimitsBody, services: ServicesDep,
                     caller: CallerDep) -> TenantResponse:
    name = _admin_name(caller, tenant)
    await services.store.set_tenant_limits(TenantLimits(
        tenant=name, max_running=body.max_running, max_queued=body.max_queued,
        submits_per_second=None if body.submits_per_second is None
        else float(body.submits_per_second),
        max_priority=body.max_priority))
    return next(entry for entry in await _tenants(services.store, caller, name))


@router.delete("/tenants/{tenant:path}/limits/", status_code=204, response_class=Response,
               summary="Lift all of a tenant's own limits (admin).",
               responses=errors(403, 404))
async def delete_limits(tenant: TenantPath, services: ServicesDep,
                        caller: CallerDep) -> Response:
    await services.store.set_tenant_limits(TenantLimits(_admin_name(caller, tenant)))
    return Response(status_code=204)


async def _tenants(store: Store, caller: Caller, only: str | None = None) -> list[TenantResponse]:
    """Every tenant known by a token, a limit or a job, or just `only`, as the
    caller may see them."""
    own = {limits.tenant: limits for limits in await store.list_tenant_limits()}
    usage = await store.tenant_usage()
    if only is not None:
        names = {only}
    elif caller.tenant_scope is not None:
        names = {caller.tenant_scope}
    else:
        names = ({token.tenant for token in await store.list_tokens()}
                 | set(own) | set(usage))
    return [TenantResponse(
        tenant=name, limits=LimitsBody.of(own.get(name) or TenantLimits(name)),
        effective_limits=LimitsBody.of(limits_in_force(name, own)),
        queued_jobs=usage.get(name, (0, 0))[0], running_jobs=usage.get(name, (0, 0))[1],
    ) for name in sorted(names)]


def _name(raw: str) -> str:
    if raw == DEFAULTS_TENANT:
        return raw
    try:
        return tenant_name(raw)
    except ValueError as exc:
        raise HTTPException(404, f"no tenant can be named {raw!r}: {exc}") from exc


def _admin_name(caller: Caller, raw: str) -> str:
    if not caller.token.is_admin:
        raise HTTPException(403, "setting a tenant's limits takes an admin token")
    return _name(raw)
