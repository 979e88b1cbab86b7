"""`/datasets/`, `/vectorDatabases/` and search: thin routes over the vector store.

Tenancy as for jobs: what a token creates belongs to its tenant; other tenants'
ids answer 404 like unknown ones; an admin token sees every tenant's. Errors of
this package become HTTP answers in `install`, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from genai_jobs.api.deps import Caller, CallerDep, Services, ServicesDep
from genai_jobs.api.errors import PayloadRejected
from genai_jobs.api.routes.status import ERROR_RESPONSES
from genai_jobs.api.urls import API_PREFIX, base_url, status_url
from genai_jobs.domain import IllegalTransition, Job, JobNotFound, NewJob
from genai_jobs.vectors.build import JOB_TYPE
from genai_jobs.vectors.datasets import Limits, read_upload
from genai_jobs.vectors.embeddings import UnknownModel, model_spec, unavailable_reason
from genai_jobs.vectors.records import (
    DatasetNotFound,
    DatasetRejected,
    NewVectorDatabase,
    NotBuilt,
    Page,
    VectorDatabase,
    VectorDatabaseNotFound,
    VectorsError,
)
from genai_jobs.vectors.schemas import (
    MAX_NAME_CHARS,
    DatasetListResponse,
    DatasetResponse,
    ExecutionStatus,
    SearchHitResponse,
    SearchRequest,
    SearchResponse,
    VectorDatabaseCreateRequest,
    VectorDatabaseListResponse,
    VectorDatabaseResponse,
    execution_status,
)
from genai_jobs.vectors.settings import VectorSettings, vector_settings
from genai_jobs.vectors.store import VectorStore, vector_store_for

if TYPE_CHECKING:
    from genai_jobs.vectors.search import Searcher

log = logging.getLogger("genai_jobs.vectors")

MAX_PAGE = 1000
MAX_OFFSET = 10**12
# Form fields besides the files (the dataset's name).
MAX_FORM_FIELDS = 10


class EmbeddingsUnavailable(VectorsError):
    pass


@dataclass
class VectorServices:
    """What these routes share in one process: the store, limits and the search cache."""

    services: Services
    settings: VectorSettings
    _searcher: Searcher | None = field(default=None, init=False)

    @property
    def vectors(self) -> VectorStore:
        return vector_store_for(self.services.store)

    def forget(self, vdb_id: UUID) -> None:
        """Drop a deleted database's vectors from this process's cache."""
        if self._searcher is not None:
            self._searcher.forget(vdb_id)

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            # Imported on first search: numpy and the model come with the embeddings extra.
            from genai_jobs.vectors.search import Searcher

            self._searcher = Searcher(self.vectors, self.settings)
        return self._searcher


async def get_vector_services(request: Request) -> VectorServices:
    found: VectorServices = request.app.state.vector_services
    return found


VectorsDep = Annotated[VectorServices, Depends(get_vector_services)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]

# 422s in the seed's shape in the OpenAPI document, as for the job routes.
datasets = APIRouter(tags=["Datasets"], responses=ERROR_RESPONSES)
vector_databases = APIRouter(tags=["Vector databases"], responses=ERROR_RESPONSES)

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": ".txt, .md, .html, .pdf, or .zip archives of those; a name "
                                 "may be a relative path (folder/file.md)."},
        "name": {"type": "string", "description": "The dataset's name (default: the first "
                                                  "file's)."}}}}}}}


# -- datasets -------------------------------------------------------------------


@datasets.post("/datasets/", status_code=201, response_model=DatasetResponse,
               summary="Upload files as a new dataset.", openapi_extra=_UPLOAD_BODY)
async def upload_dataset(request: Request, response: Response, services: ServicesDep,
                         caller: CallerDep, vectors: VectorsDep) -> DatasetResponse:
    files, name = await _read_form(request, vectors.settings)
    limits = Limits.from_settings(vectors.settings)
    documents = await asyncio.to_thread(read_upload, files, limits)  # unzipping, PDF checks
    dataset = await vectors.vectors.create_dataset(caller.token.tenant,
                                                   name or files[0][0], documents)
    response.headers["Location"] = (f"{base_url(request, services.settings.behind_proxy)}"
                                    f"{API_PREFIX}/datasets/{dataset.id}/")
    return DatasetResponse.from_dataset(dataset)


async def _read_form(request: Request, settings: VectorSettings) -> tuple[
        list[tuple[str, bytes]], str | None]:
    try:
        form = await request.form(max_files=settings.dataset_max_files,
                                  max_fields=MAX_FORM_FIELDS)
    except HTTPException as exc:
        if exc.status_code != 400:
            raise  # e.g. 413 from the body size limit
        raise _rejected(["body"], "multipart_invalid",
                        f"not a multipart upload: {exc.detail}") from exc
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(form.close)
        uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        if not uploads:
            raise _rejected(["body", "files"], "missing",
                            "send one or more files as multipart/form-data field 'files'")
        files = [(upload.filename or "", await upload.read()) for upload in uploads]
    name = form.get("name")
    if isinstance(name, str) and len(name.strip()) > MAX_NAME_CHARS:
        raise _rejected(["body", "name"], "string_too_long",
                        f"String should have at most {MAX_NAME_CHARS} characters")
    return files, name.strip() if isinstance(name, str) and name.strip() else None


@datasets.get("/datasets/", response_model=DatasetListResponse,
              summary="List the caller's datasets, newest first.")
async def list_datasets(request: Request, services: ServicesDep, caller: CallerDep,
                        vectors: VectorsDep, offset: Offset = 0,
                        limit: Limit = 100) -> DatasetListResponse:
    found, total = await vectors.vectors.list_datasets(Page(caller.tenant_scope, offset, limit))
    data = [DatasetResponse.from_dataset(dataset) for dataset in found]
    return DatasetListResponse(data=data, total_count=total,
                               **_links(request, services, offset, limit, len(data), total))


@datasets.get("/datasets/{datasetId}/", response_model=DatasetResponse,
              summary="Read one dataset.")
async def get_dataset(datasetId: UUID, caller: CallerDep,
                      vectors: VectorsDep) -> DatasetResponse:
    return DatasetResponse.from_dataset(
        await vectors.vectors.get_dataset(datasetId, caller.tenant_scope))


@datasets.delete("/datasets/{datasetId}/", status_code=204, response_class=Response,
                 summary="Delete a dataset (vector databases built from it stay).")
async def delete_dataset(datasetId: UUID, caller: CallerDep, vectors: VectorsDep) -> Response:
    await vectors.vectors.delete_dataset(datasetId, caller.tenant_scope)
    return Response(status_code=204)


# -- vector databases ---------------------------------------------------------------


@vector_databases.post("/vectorDatabases/", status_code=202,
                       response_model=VectorDatabaseResponse,
                       summary="Create a vector database; its build runs as a job.")
async def create_vector_database(body: VectorDatabaseCreateRequest, request: Request,
                                 response: Response, services: ServicesDep,
                                 caller: CallerDep,
                                 vectors: VectorsDep) -> VectorDatabaseResponse:
    await vectors.vectors.get_dataset(body.dataset_id, caller.tenant_scope)
    new = _new_vector_database(body, caller, base_url(request, services.settings.behind_proxy))
    vdb = await vectors.vectors.create_vector_database(new)
    try:
        job = (await services.store.submit(_build_job(body, caller, vdb, services))).job
    except BaseException:
        await vectors.vectors.delete_vector_database(vdb.id, None)  # nothing half-stored
        raise
    await vectors.vectors.set_build_job(vdb.id, job.id)
    vdb = await vectors.vectors.get_vector_database(vdb.id, None)
    response.headers["Location"] = status_url(
        base_url(request, services.settings.behind_proxy), job.id)
    return VectorDatabaseResponse.from_records(vdb, job)


def _new_vector_database(body: VectorDatabaseCreateRequest, caller: Caller,
                         base: str) -> NewVectorDatabase:
    try:
        spec = model_spec(body.embedding_model)
    except UnknownModel as exc:
        raise _rejected(["body", "embeddingModel"], "unknown_model", str(exc)) from exc
    chunking = body.chunking
    if chunking.chunk_size > spec.max_chunk_tokens:
        raise _rejected(["body", "chunking", "chunkSize"], "less_than_equal",
                        f"{spec.name} reads at most {spec.max_chunk_tokens} tokens per chunk")
    if chunking.chunk_overlap >= chunking.chunk_size:
        raise _rejected(["body", "chunking", "chunkOverlap"], "less_than",
                        "the overlap must be smaller than the chunk size")
    vdb_id = uuid4()
    return NewVectorDatabase(
        id=vdb_id, tenant=caller.token.tenant, name=body.name, dataset_id=body.dataset_id,
        embedding_model=spec.name, dimensions=spec.dimensions,
        chunk_size=chunking.chunk_size, chunk_overlap=chunking.chunk_overlap,
        url=f"{base}{API_PREFIX}/vectorDatabases/{vdb_id}/")


def _build_job(body: VectorDatabaseCreateRequest, caller: Caller, vdb: VectorDatabase,
               services: Services) -> NewJob:
    settings = services.settings
    most = settings.max_expires_in_seconds
    if body.expires_in is not None and body.expires_in > most:
        raise _rejected(["body", "expiresIn"], "less_than_equal",
                        f"Input should be less than or equal to {most:g}")
    if body.max_attempts is not None and body.max_attempts > settings.max_max_attempts:
        raise _rejected(["body", "maxAttempts"], "less_than_equal",
                        f"Input should be less than or equal to {settings.max_max_attempts}")
    expires_in = body.expires_in or settings.default_expires_in_seconds
    return NewJob(tenant=caller.token.tenant, job_type=JOB_TYPE,
                  payload={"vectorDatabaseId": str(vdb.id)},
                  description=f"build vector database {vdb.name!r}"[:1000],
                  expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
                  max_attempts=body.max_attempts or settings.default_max_attempts, priority=0)


@vector_databases.get("/vectorDatabases/", response_model=VectorDatabaseListResponse,
                      summary="List the caller's vector databases, newest first.")
async def list_vector_databases(request: Request, services: ServicesDep, caller: CallerDep,
                                vectors: VectorsDep, offset: Offset = 0,
                                limit: Limit = 100) -> VectorDatabaseListResponse:
    found, total = await vectors.vectors.list_vector_databases(
        Page(caller.tenant_scope, offset, limit))
    data = [VectorDatabaseResponse.from_records(vdb, await _build_job_of(services, vdb))
            for vdb in found]
    return VectorDatabaseListResponse(data=data, total_count=total,
                                      **_links(request, services, offset, limit, len(data),
                                               total))


@vector_databases.get("/vectorDatabases/{vectorDatabaseId}/",
                      response_model=VectorDatabaseResponse, summary="Read one vector database.")
async def get_vector_database(vectorDatabaseId: UUID, services: ServicesDep, caller: CallerDep,
                              vectors: VectorsDep) -> VectorDatabaseResponse:
    vdb = await vectors.vectors.get_vector_database(vectorDatabaseId, caller.tenant_scope)
    return VectorDatabaseResponse.from_records(vdb, await _build_job_of(services, vdb))


@vector_databases.delete("/vectorDatabases/{vectorDatabaseId}/", status_code=204,
                         response_class=Response,
                         summary="Delete a vector database; a running build is aborted.")
async def delete_vector_database(vectorDatabaseId: UUID, services: ServicesDep,
                                 caller: CallerDep, vectors: VectorsDep) -> Response:
    vdb = await vectors.vectors.get_vector_database(vectorDatabaseId, caller.tenant_scope)
    job = await _build_job_of(services, vdb)
    if job is not None and not job.is_terminal:
        with contextlib.suppress(IllegalTransition, JobNotFound):  # it ended meanwhile
            await services.store.request_abort(
                job.id, None, f"{caller.describe()}: its vector database was deleted")
    await vectors.vectors.delete_vector_database(vdb.id, None)
    vectors.forget(vdb.id)
    return Response(status_code=204)


@vector_databases.post("/vectorDatabases/{vectorDatabaseId}/search/",
                       response_model=SearchResponse,
                       summary="The chunks nearest a query, best first.")
async def search(vectorDatabaseId: UUID, body: SearchRequest, services: ServicesDep,
                 caller: CallerDep, vectors: VectorsDep) -> SearchResponse:
    vdb = await vectors.vectors.get_vector_database(vectorDatabaseId, caller.tenant_scope)
    status, error = execution_status(vdb, await _build_job_of(services, vdb))
    if status is not ExecutionStatus.COMPLETED:
        raise NotBuilt(f"vector database {vdb.id} is {status.value}"
                       f"{': ' + error if error else ''}; it can be searched once COMPLETED")
    reason = unavailable_reason(model_spec(vdb.embedding_model))
    if reason is not None:
        raise EmbeddingsUnavailable(f"search {reason}")
    hits = await vectors.searcher.search(vdb, body.query, body.k)
    return SearchResponse(vector_database_id=vdb.id, count=len(hits),
                          data=[SearchHitResponse.from_hit(hit) for hit in hits])


async def _build_job_of(services: Services, vdb: VectorDatabase) -> Job | None:
    if vdb.build_job_id is None:
        return None
    try:
        return await services.store.get(vdb.build_job_id)
    except JobNotFound:
        return None


# -- shared ---------------------------------------------------------------------


def _links(request: Request, services: Services, offset: int, limit: int, count: int,
           total: int) -> dict[str, Any]:
    """`count`, `next` and `previous` of a page, as the job list has them."""
    base = base_url(request, services.settings.behind_proxy)

    def page_url(at: int) -> str:
        url = request.url.include_query_params(offset=at)
        return f"{base}{url.path}?{url.query}"

    return {"count": count,
            "next": page_url(offset + limit) if offset + count < total else None,
            "previous": page_url(max(offset - limit, 0)) if offset > 0 else None}


def _rejected(loc: list[str | int], kind: str, message: str) -> PayloadRejected:
    return PayloadRejected([{"loc": loc, "msg": message, "type": kind}])


_STATUS_CODES: dict[type[VectorsError], int] = {
    DatasetNotFound: 404,
    VectorDatabaseNotFound: 404,
    NotBuilt: 409,
    EmbeddingsUnavailable: 501,
}


async def _vectors_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DatasetRejected):
        return JSONResponse({"detail": [{"loc": ["body", "files"], "msg": str(exc),
                                         "type": exc.kind}]}, status_code=422)
    status = next((code for kind, code in _STATUS_CODES.items() if isinstance(exc, kind)), 500)
    if status == 500:
        log.error("unmapped error on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)
    return JSONResponse({"detail": str(exc)}, status_code=status)


def body_limits() -> dict[tuple[str, str], int]:
    """Request body limits of these routes where they differ from the API's own."""
    return {("POST", f"{API_PREFIX}/datasets/"): vector_settings().dataset_max_upload_bytes}


def install(app: FastAPI, services: Services) -> None:
    """Add the routes of datasets, vector databases and search to `app`."""
    app.state.vector_services = VectorServices(services, vector_settings())
    app.add_exception_handler(VectorsError, _vectors_error)
    app.include_router(datasets, prefix=API_PREFIX)
    app.include_router(vector_databases, prefix=API_PREFIX)


__all__ = ["body_limits", "install"]
