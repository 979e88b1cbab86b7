"""Extension routes for the versions of a vector database: update from a dataset, list,
and choose which version answers the family's searches.

DataRobot makes a version with `POST vectorDatabases/` and a parent (an `add`);
these routes add `replace`, a default parent (the family's active version) and
the pointer. Any version's id names its family here.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from fastapi import APIRouter, Request, Response

from genai_jobs.api.deps import Caller, CallerDep, ServicesDep
from genai_jobs.api.openapi import API_ERRORS, errors
from genai_jobs.api.urls import API_PREFIX, base_url
from genai_jobs.vectors.deps import VectorsDep, VectorServices, rejected
from genai_jobs.vectors.records import Dataset, NewVectorDatabase, UpdateMode, VectorDatabase
from genai_jobs.vectors.schemas import (
    ActiveVersionRequest,
    VectorDatabaseResponse,
    VersionCreateRequest,
    VersionsResponse,
)
from genai_jobs.vectors.vdb_routes import (
    PATH,
    Build,
    active_version,
    as_version,
    built_parent,
    store_and_build,
)

router = APIRouter(tags=["Vector databases"], responses=API_ERRORS)


@router.post(PATH + "/{vectorDatabaseId}/versions/", status_code=202,
             response_model=VectorDatabaseResponse,
             summary="Extension: update a vector database from a dataset, as a new version "
                     "built by a job; it answers the family's searches once COMPLETED.",
             responses=errors(404, 409, 413, 429))
async def create_version(vectorDatabaseId: UUID, body: VersionCreateRequest, request: Request,
                         response: Response, services: ServicesDep, caller: CallerDep,
                         vectors: VectorsDep) -> VectorDatabaseResponse:
    dataset = await vectors.vectors.get_dataset(body.dataset_id, caller.tenant_scope)
    parent_id = body.parent_vector_database_id
    if parent_id is None:
        parent_id = await active_version(vectorDatabaseId, caller, vectors)
    else:
        await _same_family(vectorDatabaseId, parent_id, "parentVectorDatabaseId", caller,
                           vectors)
    parent = await built_parent(parent_id, caller, vectors)
    base = base_url(request, services.settings.behind_proxy)
    new = _version_of(parent, dataset, caller, base, body.name, body.mode)
    return await store_and_build(new, Build(body.expires_in, body.max_attempts), caller,
                                 services, vectors, base, response)


def _version_of(parent: VectorDatabase, dataset: Dataset, caller: Caller, base: str,
                name: str | None, mode: UpdateMode) -> NewVectorDatabase:
    """A new version: the parent's model and chunking (its chunks are reused), the
    dataset's documents."""
    vdb_id = uuid4()
    new = NewVectorDatabase(
        id=vdb_id, tenant=caller.token.tenant, name=name or parent.name,
        dataset_id=dataset.id, dataset_name=dataset.name,
        embedding_model=parent.embedding_model, dimensions=parent.dimensions,
        chunk_size=parent.chunk_size, chunk_overlap=parent.chunk_overlap,
        chunk_overlap_percentage=parent.chunk_overlap_percentage,
        separators=parent.separators, chunking_method=parent.chunking_method,
        url=f"{base}{API_PREFIX}{PATH}/{vdb_id}/", use_case_id=parent.use_case_id,
        created_by=str(caller.token.id),
        metadata_columns=tuple(column.name for column in dataset.metadata_columns))
    return as_version(new, parent, dataset, mode)


async def _same_family(vdb_id: UUID, other_id: UUID, field: str, caller: Caller,
                       vectors: VectorServices) -> VectorDatabase:
    """`other_id` (the body's `field`), a version of `vdb_id`'s family, or a 422."""
    vdb = await vectors.vectors.get_vector_database(vdb_id, caller.tenant_scope)
    other = await vectors.vectors.get_vector_database(other_id, caller.tenant_scope)
    if other.family_id != vdb.family_id:
        raise rejected(["body", field], "other_family",
                       f"vector database {other_id} is not a version of {vdb.family_id}'s "
                       "family")
    return other


@router.get(PATH + "/{vectorDatabaseId}/versions/", response_model=VersionsResponse,
            summary="Extension: every version of a vector database's family, oldest first, "
                    "and the one that answers its searches.", responses=errors(404))
async def list_versions(vectorDatabaseId: UUID, caller: CallerDep,
                        vectors: VectorsDep) -> VersionsResponse:
    vdb = await vectors.vectors.get_vector_database(vectorDatabaseId, caller.tenant_scope)
    return await _versions(vdb.family_id, caller, vectors)


@router.put(PATH + "/{vectorDatabaseId}/activeVersion/", response_model=VersionsResponse,
            summary="Extension: choose the version that answers the family's searches (a "
                    "rollback is this: no rebuild).", responses=errors(404, 409))
async def set_active_version(vectorDatabaseId: UUID, body: ActiveVersionRequest,
                             caller: CallerDep, vectors: VectorsDep) -> VersionsResponse:
    chosen = await _same_family(vectorDatabaseId, body.vector_database_id, "vectorDatabaseId",
                                caller, vectors)
    await built_parent(chosen.id, caller, vectors, "it can answer its family's searches")
    await vectors.vectors.set_active_version(chosen.family_id, chosen.id)
    return await _versions(chosen.family_id, caller, vectors)


async def _versions(family_id: UUID, caller: Caller, vectors: VectorServices) -> VersionsResponse:
    family = await vectors.vectors.get_family(family_id, caller.tenant_scope)
    versions = await vectors.vectors.family_versions(family_id)
    data = [VectorDatabaseResponse.from_records(vdb, await vectors.build_job_of(vdb))
            for vdb in versions]
    return VersionsResponse(family_id=family.id, active_version_id=family.active_id,
                            count=len(data), data=data)
