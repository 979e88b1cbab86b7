"""DataRobot's vector database routes, `/api/v2/genai/vectorDatabases/...`, and our search.

Bodies and answers are DataRobot's shapes (`genai_jobs.vectors.schemas`); a build
is a job like any other, on both status routes. Tenancy as for jobs: what a token
creates belongs to its tenant; other tenants' ids answer 404 like unknown ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from genai_jobs.api.deps import Caller, CallerDep, Services, ServicesDep
from genai_jobs.api.openapi import API_ERRORS, errors
from genai_jobs.api.urls import API_PREFIX, base_url, status_url
from genai_jobs.domain import IllegalTransition, JobNotFound, NewJob
from genai_jobs.vectors import capabilities
from genai_jobs.vectors.build import JOB_TYPE
from genai_jobs.vectors.capabilities import ChunkingChoice, ChunkingRefused, chunking_of
from genai_jobs.vectors.deps import (
    EmbeddingsUnavailable,
    Limit,
    Offset,
    VectorsDep,
    VectorServices,
    links,
    only_methods,
    rejected,
)
from genai_jobs.vectors.embeddings import (
    DEFAULT_MODEL,
    ModelSpec,
    UnknownModel,
    model_spec,
    unavailable_reason,
)
from genai_jobs.vectors.filters import Filter, FilterRejected, parse_filter
from genai_jobs.vectors.records import (
    Dataset,
    NewVectorDatabase,
    NotBuilt,
    Page,
    SortKey,
    UpdateMode,
    VectorDatabase,
    VectorDatabaseQuery,
)
from genai_jobs.vectors.schemas import (
    DEFAULT_USE_CASE,
    MAX_NAME_CHARS,
    CountResponse,
    ExecutionStatus,
    SearchHitResponse,
    SearchRequest,
    SearchResponse,
    VectorDatabaseCreateRequest,
    VectorDatabaseListResponse,
    VectorDatabaseResponse,
    VectorDatabaseUpdateRequest,
    execution_status,
)

router = APIRouter(tags=["Vector databases"], responses=API_ERRORS)
PATH = "/vectorDatabases"


# -- what can be built (before `/{vectorDatabaseId}/`, which would take these names) --


@router.get(f"{PATH}/supportedEmbeddings/", summary="The embedding models served here.")
async def supported_embeddings(caller: CallerDep) -> dict[str, Any]:
    return capabilities.supported_embeddings()


@router.get(f"{PATH}/supportedTextChunkings/",
            summary="The chunking methods and their bounds, per embedding model.")
async def supported_text_chunkings(caller: CallerDep) -> dict[str, Any]:
    return capabilities.supported_text_chunkings()


@router.get(f"{PATH}/supportedRetrievalSettings/",
            summary="What a search takes (how many chunks it returns).")
async def supported_retrieval_settings(caller: CallerDep) -> dict[str, Any]:
    return capabilities.supported_retrieval_settings()


# Other methods at these paths are a 405, not `/{vectorDatabaseId}/`'s (see only_methods).
for _name in ("supportedEmbeddings", "supportedTextChunkings", "supportedRetrievalSettings"):
    only_methods(router, f"{PATH}/{_name}/", "GET")


@router.get("/userLimits/vectorDatabases/", response_model=CountResponse,
            summary="How many vector databases the caller's tenant has.")
async def vector_database_count(caller: CallerDep, vectors: VectorsDep) -> CountResponse:
    return CountResponse(counter=await vectors.vectors.count_vector_databases(
        caller.token.tenant))


# -- create ---------------------------------------------------------------------


@router.post(f"{PATH}/", status_code=202, response_model=VectorDatabaseResponse,
             summary="Create a vector database (or a new version of one); it builds as a job.",
             responses=errors(404, 409, 413, 429))
async def create_vector_database(body: VectorDatabaseCreateRequest, request: Request,
                                 response: Response, services: ServicesDep,
                                 caller: CallerDep,
                                 vectors: VectorsDep) -> VectorDatabaseResponse:
    dataset = await vectors.vectors.get_dataset(body.dataset_id, caller.tenant_scope)
    parent = (None if body.parent_vector_database_id is None else
              await built_parent(body.parent_vector_database_id, caller, vectors))
    base = base_url(request, services.settings.behind_proxy)
    new = _new_vector_database(body, caller, dataset, parent, base)
    if parent is not None:
        new = as_version(new, parent, dataset, UpdateMode.ADD)
    return await store_and_build(new, Build(body.expires_in, body.max_attempts), caller,
                                 services, vectors, base, response)


@dataclasses.dataclass(frozen=True)
class Build:
    """The build job's limits, as a request asked for them (None: the defaults)."""

    expires_in: float | None
    max_attempts: int | None


async def store_and_build(new: NewVectorDatabase, build: Build, caller: Caller,
                          services: Services, vectors: VectorServices, base: str,
                          response: Response) -> VectorDatabaseResponse:
    """Store the new vector database (or version) and submit the job that builds it."""
    vdb = await vectors.vectors.create_vector_database(new)
    try:
        job = (await services.store.submit(_build_job(build, caller, vdb, services))).job
    except BaseException:
        await vectors.vectors.delete_vector_database(vdb.id, None)  # nothing half-stored
        raise
    await vectors.vectors.set_build_job(vdb.id, job.id)
    vdb = await vectors.vectors.get_vector_database(vdb.id, None)
    response.headers["Location"] = status_url(base, job.id)
    return VectorDatabaseResponse.from_records(vdb, job)


async def built_parent(parent_id: UUID, caller: Caller, vectors: VectorServices,
                       purpose: str = "a new version can be made from it") -> VectorDatabase:
    """The version, COMPLETED (else NotBuilt saying what it is wanted for)."""
    parent = await vectors.vectors.get_vector_database(parent_id, caller.tenant_scope)
    status, _ = execution_status(parent, await vectors.build_job_of(parent))
    if status is not ExecutionStatus.COMPLETED:
        raise NotBuilt(f"vector database {parent.id} is {status.value}; {purpose} once it "
                       "is COMPLETED")
    return parent


def _new_vector_database(body: VectorDatabaseCreateRequest, caller: Caller, dataset: Dataset,
                         parent: VectorDatabase | None, base: str) -> NewVectorDatabase:
    chunking = _chunking(body, parent)
    vdb_id = uuid4()
    default_name = parent.name if parent else f"Vector Database for {dataset.name}"
    return NewVectorDatabase(
        id=vdb_id, tenant=caller.token.tenant, name=body.name or default_name[:MAX_NAME_CHARS],
        dataset_id=dataset.id, dataset_name=dataset.name,
        embedding_model=chunking.spec.name, dimensions=chunking.spec.dimensions,
        chunk_size=chunking.size, chunk_overlap=chunking.overlap_tokens,
        chunk_overlap_percentage=chunking.overlap_percentage, separators=chunking.separators,
        chunking_method=chunking.method, url=f"{base}{API_PREFIX}{PATH}/{vdb_id}/",
        use_case_id=body.use_case_id or (parent.use_case_id if parent else DEFAULT_USE_CASE),
        created_by=str(caller.token.id),
        metadata_columns=tuple(column.name for column in dataset.metadata_columns))


def _chunking(body: VectorDatabaseCreateRequest, parent: VectorDatabase | None) -> ChunkingChoice:
    asked = body.chunking_parameters
    spec = _model(asked.embedding_model or (parent.embedding_model if parent else DEFAULT_MODEL))
    if parent is not None:
        _check_same_as_parent(body, parent, spec)
        asked = asked.model_copy(update={
            "chunk_size": parent.chunk_size,
            "chunk_overlap_percentage": parent.chunk_overlap_percentage,
            "separators": list(parent.separators), "chunking_method": parent.chunking_method})
    try:
        return chunking_of(asked, spec)
    except ChunkingRefused as exc:
        raise rejected(["body", "chunkingParameters", exc.field], exc.kind, str(exc)) from exc


def _model(name: str) -> ModelSpec:
    try:
        return model_spec(name)
    except UnknownModel as exc:
        raise rejected(["body", "chunkingParameters", "embeddingModel"], "unknown_model",
                       f"{exc}; see GET vectorDatabases/supportedEmbeddings/") from exc


def _check_same_as_parent(body: VectorDatabaseCreateRequest, parent: VectorDatabase,
                          spec: ModelSpec) -> None:
    """A version reuses its parent's vectors, so it must embed and chunk as the parent did."""
    asked = body.chunking_parameters
    theirs: dict[str, Any] = {
        "embeddingModel": (spec.name, model_spec(parent.embedding_model).name),
        "chunkingMethod": (asked.chunking_method, parent.chunking_method),
        "chunkSize": (asked.chunk_size, parent.chunk_size),
        "chunkOverlapPercentage": (asked.chunk_overlap_percentage,
                                   parent.chunk_overlap_percentage),
        "separators": (None if asked.separators is None else tuple(asked.separators),
                       parent.separators)}
    for key, (wanted, parents) in theirs.items():
        if wanted is not None and wanted != parents:
            raise rejected(["body", "chunkingParameters", key], "differs_from_parent",
                           f"a new version keeps its family's {key} ({parents!r}): its "
                           "parent's chunks are reused, not made again")


def as_version(new: NewVectorDatabase, parent: VectorDatabase, dataset: Dataset,
               mode: UpdateMode) -> NewVectorDatabase:
    """`new` as the next version of `parent`'s family, made from it and `dataset`."""
    if mode is UpdateMode.REPLACE:
        return dataclasses.replace(new, parent_id=parent.id, family_id=parent.family_id,
                                   dataset_ids=(dataset.id,), update_mode=mode)
    columns = [*parent.metadata_columns,
               *(name for name in new.metadata_columns if name not in parent.metadata_columns)]
    dataset_ids = (*(each for each in parent.dataset_ids if each != dataset.id), dataset.id)
    return dataclasses.replace(new, parent_id=parent.id, family_id=parent.family_id,
                               dataset_ids=dataset_ids, metadata_columns=tuple(columns),
                               update_mode=mode)


def _build_job(build: Build, caller: Caller, vdb: VectorDatabase, services: Services) -> NewJob:
    settings = services.settings
    most = settings.max_expires_in_seconds
    if build.expires_in is not None and build.expires_in > most:
        raise rejected(["body", "expiresIn"], "less_than_equal",
                       f"Input should be less than or equal to {most:g}")
    if build.max_attempts is not None and build.max_attempts > settings.max_max_attempts:
        raise rejected(["body", "maxAttempts"], "less_than_equal",
                       f"Input should be less than or equal to {settings.max_max_attempts}")
    expires_in = build.expires_in or settings.default_expires_in_seconds
    what = (f"update vector database {vdb.name!r} to version {vdb.version} "
            f"({vdb.update_mode.value})" if vdb.parent_id else f"build vector database "
            f"{vdb.name!r}")
    return NewJob(tenant=caller.token.tenant, job_type=JOB_TYPE,
                  payload={"vectorDatabaseId": str(vdb.id)},
                  description=what[:1000],
                  expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
                  max_attempts=build.max_attempts or settings.default_max_attempts, priority=0)


# -- read, list, rename, delete -----------------------------------------------------


SortParameter = Annotated[str | None, Query(
    description="A field to sort by, `-` first for descending: "
                + ", ".join(key.value for key in SortKey) + " (default -creationDate).",
    # The document lists what `_sort` takes; `_sort` refuses the rest with its own message.
    json_schema_extra={"enum": [f"{sign}{key.value}" for key in SortKey for sign in ("", "-")]},
)]


@router.get(f"{PATH}/", response_model=VectorDatabaseListResponse,
            summary="List the caller's vector databases, newest first.")
async def list_vector_databases(
    request: Request, services: ServicesDep, caller: CallerDep, vectors: VectorsDep,
    offset: Offset = 0, limit: Limit = 100,
    search: Annotated[str | None, Query(max_length=MAX_NAME_CHARS,
                                        description="Part of the name, any case.")] = None,
    sort: SortParameter = None,
    completedOnly: Annotated[bool, Query(description="Only COMPLETED ones.")] = False,
    useCaseId: Annotated[list[str] | None, Query(description="Only these use cases.")] = None,
    playgroundId: Annotated[str | None, Query(description="No vector database here is "
                                              "used by a playground: none match.")] = None,
) -> VectorDatabaseListResponse:
    key, descending = _sort(sort)
    query = VectorDatabaseQuery(Page(caller.tenant_scope, offset, limit), search=search,
                                completed_only=completedOnly, use_case_ids=tuple(useCaseId or ()),
                                sort=key, descending=descending)
    found, total = ([], 0) if playgroundId else await vectors.vectors.list_vector_databases(query)
    data = [VectorDatabaseResponse.from_records(vdb, await vectors.build_job_of(vdb))
            for vdb in found]
    return VectorDatabaseListResponse(data=data, total_count=total,
                                      **links(request, services, offset, limit, len(data),
                                              total))


def _sort(raw: str | None) -> tuple[SortKey, bool]:
    if not raw:
        return SortKey.CREATION_DATE, True
    name = raw.removeprefix("-")
    try:
        return SortKey(name), raw.startswith("-")
    except ValueError:
        raise rejected(["query", "sort"], "enum", "sort by one of "
                       + ", ".join(key.value for key in SortKey)
                       + " (with '-' first for descending)") from None


@router.get(PATH + "/{vectorDatabaseId}/", response_model=VectorDatabaseResponse,
            summary="Read one vector database.", responses=errors(404))
async def get_vector_database(vectorDatabaseId: UUID, caller: CallerDep,
                              vectors: VectorsDep) -> VectorDatabaseResponse:
    vdb = await vectors.vectors.get_vector_database(vectorDatabaseId, caller.tenant_scope)
    return VectorDatabaseResponse.from_records(vdb, await vectors.build_job_of(vdb))


@router.patch(PATH + "/{vectorDatabaseId}/", response_model=VectorDatabaseResponse,
              summary="Rename a vector database.", responses=errors(404, 413))
async def update_vector_database(vectorDatabaseId: UUID, body: VectorDatabaseUpdateRequest,
                                 caller: CallerDep,
                                 vectors: VectorsDep) -> VectorDatabaseResponse:
    if body.credential_id is not None:
        raise rejected(["body", "credentialId"], "not_supported",
                       "there are no connected vector databases here to give credentials to")
    if body.name is None:
        vdb = await vectors.vectors.get_vector_database(vectorDatabaseId, caller.tenant_scope)
    else:
        vdb = await vectors.vectors.rename_vector_database(vectorDatabaseId,
                                                           caller.tenant_scope, body.name)
    return VectorDatabaseResponse.from_records(vdb, await vectors.build_job_of(vdb))


@router.delete(PATH + "/{vectorDatabaseId}/", status_code=204, response_class=Response,
               summary="Delete a vector database; a running build is aborted.",
               responses=errors(404))
async def delete_vector_database(vectorDatabaseId: UUID, services: ServicesDep,
                                 caller: CallerDep, vectors: VectorsDep) -> Response:
    vdb = await vectors.vectors.get_vector_database(vectorDatabaseId, caller.tenant_scope)
    job = await vectors.build_job_of(vdb)
    if job is not None and not job.is_terminal:
        with contextlib.suppress(IllegalTransition, JobNotFound):  # it ended meanwhile
            await services.store.request_abort(
                job.id, None, f"{caller.describe()}: its vector database was deleted")
    await vectors.vectors.delete_vector_database(vdb.id, None)
    vectors.forget(vdb.id)
    return Response(status_code=204)


# -- search and export -----------------------------------------------------------


async def _built(vectors: VectorServices, vdb_id: UUID, caller: Caller) -> VectorDatabase:
    vdb = await vectors.vectors.get_vector_database(vdb_id, caller.tenant_scope)
    status, error = execution_status(vdb, await vectors.build_job_of(vdb))
    if status is not ExecutionStatus.COMPLETED:
        raise NotBuilt(f"vector database {vdb.id} is {status.value}"
                       f"{': ' + error if error else ''}; it can be used once COMPLETED")
    return vdb


@router.post(PATH + "/{vectorDatabaseId}/search/", response_model=SearchResponse,
             summary="Extension: the chunks nearest a query, best first.",
             responses=errors(404, 409, 413, 501))
async def search(vectorDatabaseId: UUID, body: SearchRequest, caller: CallerDep,
                 vectors: VectorsDep) -> SearchResponse:
    where = None if body.filter is None else _filter(body.filter)
    vdb_id = vectorDatabaseId
    if body.use_active_version:
        vdb_id = await active_version(vdb_id, caller, vectors)
    vdb = await _built(vectors, vdb_id, caller)
    reason = unavailable_reason(model_spec(vdb.embedding_model))
    if reason is not None:
        raise EmbeddingsUnavailable(f"search {reason}")
    try:
        hits = await vectors.searcher.search(vdb, body.query, body.k, where, body.mode,
                                             body.keyword_weight)
    except FilterRejected as exc:
        raise _filter_refused(exc) from exc
    return SearchResponse(vector_database_id=vdb.id, version=vdb.version, mode=body.mode,
                          count=len(hits),
                          data=[SearchHitResponse.from_hit(hit) for hit in hits])


def _filter(raw: Any) -> Filter:
    try:
        return parse_filter(raw)
    except FilterRejected as exc:
        raise _filter_refused(exc) from exc


def _filter_refused(exc: FilterRejected) -> Exception:
    return rejected(["body", "filter", *exc.path], "invalid_filter", str(exc))


async def active_version(vdb_id: UUID, caller: Caller, vectors: VectorServices) -> UUID:
    """The version that answers searches of `vdb_id`'s family."""
    vdb = await vectors.vectors.get_vector_database(vdb_id, caller.tenant_scope)
    family = await vectors.vectors.get_family(vdb.family_id, caller.tenant_scope)
    if family.active_id is None:
        raise NotBuilt(f"no version of vector database {vdb.family_id} is COMPLETED yet")
    return family.active_id


@router.get(PATH + "/{vectorDatabaseId}/textAndEmbeddings/", response_class=StreamingResponse,
            responses={200: {"content": {"application/vnd.apache.parquet": {}},
                             "description": "A Parquet file: chunk text, metadata, vectors."},
                       **errors(404, 409, 501)},
            summary="Download the chunks and their vectors as a Parquet file (streamed).")
async def text_and_embeddings(vectorDatabaseId: UUID, caller: CallerDep, vectors: VectorsDep,
                              part: Annotated[int | None, Query(
                                  ge=1, le=1, description="A vector database built here has "
                                  "one part.")] = None,
                              ) -> StreamingResponse:
    vdb = await _built(vectors, vectorDatabaseId, caller)
    try:  # pyarrow comes with the embeddings extra
        from genai_jobs.vectors import export
    except ImportError as exc:
        raise EmbeddingsUnavailable(f"the export {unavailable_reason()}") from exc
    stream = export.parquet_stream(_export_batches(vectors, vdb), vdb.dimensions,
                                   vdb.metadata_columns)
    name = export.export_file_name(vdb.name, vdb.id)
    return StreamingResponse(stream, media_type="application/vnd.apache.parquet",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _export_batches(vectors: VectorServices, vdb: VectorDatabase) -> AsyncIterator[Any]:
    from genai_jobs.vectors.export import ExportBatch

    async for first_seq, count, matrix in vectors.vectors.vector_batches(vdb.id):
        chunks = await vectors.vectors.chunk_range(vdb.id, first_seq, count)
        yield ExportBatch(chunks, matrix, [chunk.metadata for chunk in chunks])
