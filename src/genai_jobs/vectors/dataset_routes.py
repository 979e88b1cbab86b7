"""DataRobot's dataset routes, `/api/v2/datasets/...`, as `datarobot.Dataset` calls them.

An upload is ingested inside its request (checked, unzipped or read as a CSV, and
committed), so it is done before the SDK's first status poll and its 5-second
sleep never happens; files that cannot be used are a 422 naming every one of
them, and nothing is stored, unless the upload asks to skip bad files (the form
field `skipBadFiles`, an extension), when the dataset keeps the others and lists
the bad ones. The ingest is recorded as a job that is COMPLETED from the start,
so that the upload's `Location` is a status route like DataRobot's: the classic
status route answers it with `303 See Other` to the dataset.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from genai_jobs.api.deps import Caller, CallerDep, Services, ServicesDep
from genai_jobs.api.openapi import API_ERRORS, errors
from genai_jobs.api.schemas import CamelModel
from genai_jobs.api.urls import base_url
from genai_jobs.domain import NewJob
from genai_jobs.vectors.datasets import SUPPORTED_UPLOADS, Ingested, Limits, ingest_file
from genai_jobs.vectors.deps import (
    Limit,
    Offset,
    VectorsDep,
    VectorServices,
    links,
    only_methods,
    rejected,
)
from genai_jobs.vectors.records import Dataset, NewDataset, Page
from genai_jobs.vectors.schemas import (
    MAX_NAME_CHARS,
    DatasetListResponse,
    DatasetResponse,
    DatasetUpdateRequest,
)
from genai_jobs.vectors.spooled import SLICE_BYTES, Content, SpooledFile

PREFIX = "/api/v2"
UPLOAD_PATH = f"{PREFIX}/datasets/fromFile/"
INGEST_JOB_TYPE = "dataset.ingest"
# Form fields besides the file (the dataset's name, skipBadFiles).
MAX_FORM_FIELDS = 10
SKIP_FIELD = "skipBadFiles"
# A form field read as a query's booleans are (true/false, 1/0, yes/no, on/off).
_BOOLEAN = TypeAdapter(bool)

router = APIRouter(tags=["Datasets"], responses=API_ERRORS)

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": f"One of {SUPPORTED_UPLOADS}: a document, a zip of "
                                "documents, or a CSV with a `document` column (and "
                                "`document_file_path`, and up to 50 metadata columns)."},
        "name": {"type": "string", "description": "Extension: the dataset's name "
                                                  "(default: the file's)."},
        SKIP_FIELD: {"type": "boolean", "default": False, "description": "Extension: keep the "
                     "good files of an upload with bad ones (a zip's empty, corrupt or "
                     "unsupported members), listing the bad ones in the dataset's "
                     "`skippedFiles`. Unsafe names, zip bombs and limits still refuse "
                     "the whole upload, as does an upload whose every file is bad."}},
    "additionalProperties": False}}}}}


_FORM_FIELDS = frozenset({"file", "name", SKIP_FIELD})


class UploadResponse(CamelModel):
    """DataRobot's answer to an upload: the ingest's status and the dataset's ids."""

    status_id: UUID
    catalog_id: UUID
    catalog_version_id: UUID


@router.post("/datasets/fromFile/", status_code=202, response_model=UploadResponse,
             summary="Upload a file as a new dataset (ingested before the answer).",
             openapi_extra=_UPLOAD_BODY, responses=errors(413))
async def upload_dataset(request: Request, response: Response, services: ServicesDep,
                         caller: CallerDep, vectors: VectorsDep) -> UploadResponse:
    upload = await _read_form(request)
    try:
        return await _store_upload(request, response, services, caller, vectors, upload)
    finally:
        # In a thread: closing the last descriptor of a large temporary file frees its
        # pages in the kernel, ~20 ms for 160 MB that the event loop would wait for.
        await asyncio.to_thread(upload.release)


async def _store_upload(request: Request, response: Response, services: Services,
                        caller: Caller, vectors: VectorServices,
                        upload: _Upload) -> UploadResponse:
    ingested = await asyncio.to_thread(ingest_file, upload.file_name, upload.content,
                                       Limits.from_settings(vectors.settings),
                                       upload.skip_bad_files)
    if not ingested.documents:
        raise rejected(["body", "file"], "empty_file",
                       f"{upload.file_name}: it holds no documents")
    base = base_url(request, services.settings.behind_proxy)
    dataset = await vectors.vectors.create_dataset(NewDataset(
        id=uuid4(), tenant=caller.token.tenant, name=upload.name or upload.file_name,
        created_by=caller.token.tenant, documents=ingested.documents,
        metadata_columns=ingested.metadata_columns, skipped_files=ingested.skipped_files))
    try:
        job = await services.store.record_completed(
            _ingest_job(caller, upload.file_name, dataset), _ingest_result(dataset, ingested),
            f"{base}{PREFIX}/datasets/{dataset.id}/")
    except BaseException:
        await vectors.vectors.delete_dataset(dataset.id, None)  # nothing half-stored
        raise
    response.headers["Location"] = f"{base}{PREFIX}/status/{job.id}/"
    return UploadResponse(status_id=job.id, catalog_id=dataset.id,
                          catalog_version_id=dataset.version_id)


only_methods(router, "/datasets/fromFile/", "POST")


def _ingest_job(caller: Caller, file_name: str, dataset: Dataset) -> NewJob:
    return NewJob(tenant=caller.token.tenant, job_type=INGEST_JOB_TYPE,
                  payload={"fileName": file_name, "datasetId": str(dataset.id)},
                  description=f"ingest {file_name}"[:1000], expires_at=datetime.now(UTC),
                  max_attempts=1, priority=0)


def _ingest_result(dataset: Dataset, ingested: Ingested) -> dict[str, Any]:
    return {"datasetId": str(dataset.id), "rowCount": dataset.document_count,
            "datasetSize": dataset.total_bytes,
            "metadataColumns": [column.name for column in ingested.metadata_columns],
            "skippedFiles": [file.name for file in ingested.skipped_files]}


@dataclass(frozen=True, slots=True)
class _Upload:
    file_name: str
    content: Content
    name: str | None  # the dataset's, when given
    skip_bad_files: bool

    def release(self) -> None:
        """Let go of the spooled file now (a file descriptor, and its disk space)."""
        if isinstance(self.content, SpooledFile):
            self.content.close()


async def _read_form(request: Request) -> _Upload:
    """The file and fields of an upload's multipart form."""
    try:
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except HTTPException as exc:
        if exc.status_code != 400:
            raise  # e.g. 413 from the body size limit
        raise rejected(["body"], "multipart_invalid",
                       f"not a multipart upload of one file: {exc.detail}") from exc
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(form.close)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise rejected(["body", "file"], "missing",
                           "send the file as multipart/form-data field 'file'")
        # Unknown fields are refused, as in every JSON body here, not silently ignored (a
        # misspelt `skipBadFiles` would otherwise upload nothing the caller meant to skip).
        unknown = next((key for key in form if key not in _FORM_FIELDS), None)
        if unknown is not None:
            raise rejected(["body", unknown], "extra_forbidden",
                           f"Extra inputs are not permitted: the form takes "
                           f"{', '.join(sorted(_FORM_FIELDS))}")
        name = form.get("name")
        if isinstance(name, str) and len(name.strip()) > MAX_NAME_CHARS:
            raise rejected(["body", "name"], "string_too_long",
                           f"String should have at most {MAX_NAME_CHARS} characters")
        skip_bad_files = _form_boolean(form.get(SKIP_FIELD), SKIP_FIELD)
        content: Content
        if upload.size is not None and upload.size > SLICE_BYTES:
            # Left in the file the parser spooled it to, and read a slice at a time.
            content = SpooledFile.of(upload.file)
        else:
            content = await upload.read()
    return _Upload(upload.filename or "", content,
                   name.strip() if isinstance(name, str) and name.strip() else None,
                   skip_bad_files)


def _form_boolean(value: object, field: str) -> bool:
    if value is None:
        return False
    try:
        return _BOOLEAN.validate_python(value if isinstance(value, str) else object())
    except ValidationError as exc:
        error = exc.errors()[0]
        raise rejected(["body", field], error["type"], error["msg"]) from None


@router.get("/datasets/", response_model=DatasetListResponse,
            summary="List the caller's datasets, newest first.")
async def list_datasets(request: Request, services: ServicesDep, caller: CallerDep,
                        vectors: VectorsDep, offset: Offset = 0,
                        limit: Limit = 100) -> DatasetListResponse:
    found, total = await vectors.vectors.list_datasets(Page(caller.tenant_scope, offset, limit))
    data = [DatasetResponse.from_dataset(dataset) for dataset in found]
    return DatasetListResponse(data=data, total_count=total,
                               **links(request, services, offset, limit, len(data), total))


@router.get("/datasets/{datasetId}/", response_model=DatasetResponse,
            summary="Read one dataset.", responses=errors(404))
async def get_dataset(datasetId: UUID, caller: CallerDep,
                      vectors: VectorsDep) -> DatasetResponse:
    return DatasetResponse.from_dataset(
        await vectors.vectors.get_dataset(datasetId, caller.tenant_scope))


@router.patch("/datasets/{datasetId}/", response_model=DatasetResponse,
              summary="Rename a dataset and/or set its categories (Dataset.modify).",
              responses=errors(404, 413))
async def update_dataset(datasetId: UUID, body: DatasetUpdateRequest, caller: CallerDep,
                         vectors: VectorsDep) -> DatasetResponse:
    categories = None if body.categories is None else [item.value for item in body.categories]
    return DatasetResponse.from_dataset(await vectors.vectors.update_dataset(
        datasetId, caller.tenant_scope, body.name, categories))


@router.delete("/datasets/{datasetId}/", status_code=204, response_class=Response,
               summary="Delete a dataset (vector databases built from it stay).",
               responses=errors(404))
async def delete_dataset(datasetId: UUID, caller: CallerDep, vectors: VectorsDep) -> Response:
    await vectors.vectors.delete_dataset(datasetId, caller.tenant_scope)
    return Response(status_code=204)
