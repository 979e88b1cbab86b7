"""A blocking Python client for datasets, vector databases and search.

It speaks HTTP only and imports nothing of the server, like `genai_jobs.client`,
whose errors it raises (NotFound, ValidationFailed, Conflict, ...) and whose
`Client.wait` follows a build. It uses the same routes and shapes as DataRobot's
SDK (datasets at `/api/v2/datasets/`, vector databases at
`/api/v2/genai/vectorDatabases/`), plus our search:

    with VectorClient(url, token=token) as vectors:
        dataset = vectors.upload_dataset(["docs/"])
        vdb = vectors.create_vector_database(dataset.id, "docs")
        vectors.wait_for_build(vdb, timeout=600)
        for hit in vectors.search(vdb.id, "How do I rotate a token?", k=3):
            print(hit.score, hit.document_name, hit.text)
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict, Field

from genai_jobs.client import Client, FieldError, JobInfo, TransportError, ValidationFailed
from genai_jobs.client._base import DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL, BaseClient, Call

T = TypeVar("T")
API_PREFIX = "/api/v2/genai"
DATASETS = "/api/v2/datasets"
# What the server accepts (genai_jobs.vectors.datasets), repeated here so that the
# client needs nothing of the server: other files in a folder are left out. A CSV
# (a document per row) is uploaded on its own.
UPLOAD_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".zip")
CSV_SUFFIX = ".csv"
# The refusals of one bad file among good ones, which `skip_bad_files` skips (as
# genai_jobs.vectors.datasets.SKIPPABLE); others refuse the whole upload.
SKIPPABLE_TYPES = frozenset({
    "unsupported_type", "empty_file", "not_text", "corrupt_pdf", "encrypted_pdf",
    "encrypted_archive", "nested_archive", "file_too_large", "duplicate_name",
})
# Embedding a large dataset takes a while: uploads and searches may be slow to answer.
SLOW_CALL_SECONDS = 300.0
EXPORT_BLOCK_BYTES = 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class MetadataColumnInfo(_Model):
    name: str
    type: str


class SkippedFileInfo(_Model):
    name: str
    type: str
    reason: str


class DatasetInfo(_Model):
    """A dataset, in DataRobot's shape."""

    id: UUID = Field(alias="datasetId")
    version_id: UUID = Field(alias="versionId")
    name: str
    row_count: int = Field(alias="rowCount")
    dataset_size: int = Field(alias="datasetSize")
    processing_state: str = Field(alias="processingState")
    creation_date: datetime = Field(alias="creationDate")
    metadata_columns: list[MetadataColumnInfo] = Field(default_factory=list,
                                                       alias="metadataColumns")
    skipped_files: list[SkippedFileInfo] = Field(default_factory=list, alias="skippedFiles")


class _Uploaded(_Model):
    catalog_id: UUID = Field(alias="catalogId")


class SkippedDocumentInfo(_Model):
    name: str
    reason: str


class VectorDatabaseInfo(_Model):
    """A vector database, in DataRobot's shape (the fields this client shows)."""

    id: UUID
    name: str
    dataset_id: UUID = Field(alias="datasetId")
    embedding_model: str = Field(alias="embeddingModel")
    dimensions: int
    chunking_method: str = Field(alias="chunkingMethod")
    chunk_size: int = Field(alias="chunkSize")
    chunk_overlap_percentage: int = Field(alias="chunkOverlapPercentage")
    separators: list[str]
    chunks_count: int = Field(alias="chunksCount")
    size: int
    execution_status: str = Field(alias="executionStatus")
    error_message: str | None = Field(default=None, alias="errorMessage")
    build_status_id: UUID | None = Field(alias="buildStatusId")
    use_case_id: str = Field(alias="useCaseId")
    parent_id: UUID | None = Field(default=None, alias="parentId")
    family_id: UUID = Field(alias="familyId")
    version: int
    added_dataset_ids: list[UUID] = Field(alias="addedDatasetIds")
    creation_date: datetime = Field(alias="creationDate")
    skipped_documents: list[SkippedDocumentInfo] = Field(default_factory=list,
                                                         alias="skippedDocuments")
    update_mode: str = Field(default="add", alias="updateMode")
    # What the build changed from the parent: {"documents": {"added": ..., ...},
    # "chunks": {..., "embedded": ..., "reused": ...}}; {} until COMPLETED.
    changes: dict[str, Any] = Field(default_factory=dict)


class Versions(_Model):
    """A vector database's family: its versions, oldest first, and the active one."""

    family_id: UUID = Field(alias="familyId")
    active_version_id: UUID | None = Field(alias="activeVersionId")
    data: list[VectorDatabaseInfo]


class SearchHit(_Model):
    text: str
    score: float
    document_name: str = Field(alias="documentName")
    chunk_index: int = Field(alias="chunkIndex")
    start_char: int = Field(alias="startChar")
    end_char: int = Field(alias="endChar")
    page: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class _Page(_Model):
    data: list[dict[str, Any]]


def upload_files(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """(name in the dataset, file) for each path: a folder gives its supported files,
    named by their path from the folder's parent (`docs/guide/intro.md`)."""
    found: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            root = path.resolve().parent
            found.extend((file.resolve().relative_to(root).as_posix(), file)
                         for file in sorted(path.rglob("*"))
                         if file.is_file() and _wanted(file, path))
        else:
            found.append((path.name, path))
    return found


def _wanted(file: Path, folder: Path) -> bool:
    hidden = any(part.startswith(".") for part in file.relative_to(folder).parts)
    return not hidden and file.suffix.lower() in UPLOAD_SUFFIXES


def upload_body(files: list[tuple[str, Path]]) -> tuple[str, bytes]:
    """The one file of an upload: a single file as it is, several zipped together
    (an archive among them is refused by the server: archives do not nest)."""
    if len(files) == 1 and not Path(files[0][0]).parent.name:
        return files[0][0], files[0][1].read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for shown, file in files:
            archive.write(file, shown)
    return "dataset.zip", out.getvalue()


class VectorClient:
    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._base = BaseClient(url, token, timeout)
        self._token = token
        self._http = httpx.Client(base_url=self._base.url, headers=self._base.headers)

    def __enter__(self) -> VectorClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- datasets -----------------------------------------------------------
    def upload_dataset(self, paths: Iterable[str | Path], name: str | None = None, *,
                       skip_bad_files: bool = False) -> DatasetInfo:
        """Upload files and folders as one dataset (DataRobot's `fromFile`): one file as it
        is (a CSV is read as a document per row), several zipped into one.

        Bad files (empty, corrupt, ...) refuse the upload with ValidationFailed, an error
        per file (`bad_files` sorts them out); with `skip_bad_files` the dataset keeps the
        others and lists the bad ones in `skipped_files`."""
        files = upload_files(paths)
        if not files:
            raise ValueError("no files to upload (supported: " + ", ".join(UPLOAD_SUFFIXES)
                             + f", or one {CSV_SUFFIX})")
        if len(files) > 1 and any(shown.lower().endswith(CSV_SUFFIX) for shown, _ in files):
            raise ValueError("a CSV is a dataset of its own: upload it alone")
        file_name, content = upload_body(files)
        call = Call("POST", f"{DATASETS}/fromFile/", _Uploaded.model_validate,
                    action="upload a dataset", held_seconds=SLOW_CALL_SECONDS)
        fields = {"name": name or Path(str(files[0][0])).parts[0]}
        if skip_bad_files:
            fields["skipBadFiles"] = "true"
        uploaded = self._send(call, files={"file": (file_name, content,
                                                    "application/octet-stream")},
                              data=fields)
        return self.get_dataset(uploaded.catalog_id)

    def get_dataset(self, dataset_id: UUID | str) -> DatasetInfo:
        return self._send(Call("GET", f"{DATASETS}/{dataset_id}/",
                               DatasetInfo.model_validate, action="read a dataset",
                               subject=f"dataset {dataset_id}"))

    def list_datasets(self, limit: int = 100) -> list[DatasetInfo]:
        page = self._send(Call("GET", f"{DATASETS}/", _Page.model_validate,
                               action="list datasets", params=(("limit", str(limit)),)))
        return [DatasetInfo.model_validate(item) for item in page.data]

    def delete_dataset(self, dataset_id: UUID | str) -> None:
        self._send(Call("DELETE", f"{DATASETS}/{dataset_id}/", _nothing,
                        action="delete a dataset", subject=f"dataset {dataset_id}"))

    # -- vector databases ---------------------------------------------------
    def create_vector_database(
        self, dataset_id: UUID | str, name: str | None = None, *,
        chunk_size: int | None = None, chunk_overlap_percentage: int | None = None,
        separators: list[str] | None = None, embedding_model: str | None = None,
        use_case_id: str | None = None, parent_id: UUID | str | None = None,
        expires_in: float | None = None, max_attempts: int | None = None,
    ) -> VectorDatabaseInfo:
        """Create a vector database (with `parent_id`: a new version of the parent's family,
        which reuses its chunks); its build runs as a job (`wait_for_build`)."""
        chunking = _present({"chunkSize": chunk_size, "separators": separators,
                             "chunkOverlapPercentage": chunk_overlap_percentage,
                             "embeddingModel": embedding_model})
        body = _present({"datasetId": str(dataset_id), "name": name, "useCaseId": use_case_id,
                         "parentVectorDatabaseId": None if parent_id is None else str(parent_id),
                         "expiresIn": expires_in, "maxAttempts": max_attempts})
        body["chunkingParameters"] = chunking
        return self._send(Call("POST", f"{API_PREFIX}/vectorDatabases/",
                               VectorDatabaseInfo.model_validate,
                               action="create a vector database", json=body))

    def update_vector_database(
        self, vdb_id: UUID | str, dataset_id: UUID | str, mode: str, *,
        parent_id: UUID | str | None = None, name: str | None = None,
        expires_in: float | None = None, max_attempts: int | None = None,
    ) -> VectorDatabaseInfo:
        """Make a new version of `vdb_id`'s family from a dataset: `mode` "add" (its
        documents added, one of the same name replaced) or "replace" (its documents and
        no others). It starts from the family's active version (or `parent_id`), reuses
        every chunk the family has embedded, and becomes the active version once its
        build (`wait_for_build`) is COMPLETED."""
        body = _present({"datasetId": str(dataset_id), "mode": mode, "name": name,
                         "parentVectorDatabaseId": None if parent_id is None else str(parent_id),
                         "expiresIn": expires_in, "maxAttempts": max_attempts})
        return self._send(Call("POST", f"{API_PREFIX}/vectorDatabases/{vdb_id}/versions/",
                               VectorDatabaseInfo.model_validate,
                               action="update a vector database",
                               subject=f"vector database {vdb_id}", json=body))

    def versions(self, vdb_id: UUID | str) -> Versions:
        """The versions of `vdb_id`'s family and the one its searches use."""
        return self._send(Call("GET", f"{API_PREFIX}/vectorDatabases/{vdb_id}/versions/",
                               Versions.model_validate, action="list versions",
                               subject=f"vector database {vdb_id}"))

    def set_active_version(self, vdb_id: UUID | str, version_id: UUID | str) -> Versions:
        """Make `version_id` (COMPLETED, of `vdb_id`'s family) answer the family's searches:
        a rollback, or a roll forward, without building anything."""
        return self._send(Call("PUT", f"{API_PREFIX}/vectorDatabases/{vdb_id}/activeVersion/",
                               Versions.model_validate, action="choose the active version",
                               subject=f"vector database {vdb_id}",
                               json={"vectorDatabaseId": str(version_id)}))

    def verify_vector_database(self, vdb_id: UUID | str, *, reembed: int | None = None,
                               full: bool = False) -> JobInfo:
        """Start a `vectorDatabase.verify` job on a COMPLETED version: it checks that the
        index holds exactly the chunks its records list, with the right vectors
        (`reembed` chunks embedded again and compared; every one with `full`). Wait for it
        with `wait_for_job`; its result is the report (`ok`, and `drift` by kind)."""
        payload: dict[str, Any] = {"vectorDatabaseId": str(vdb_id)}
        if reembed is not None:
            payload["reembed"] = reembed
        if full:
            payload["full"] = True
        with Client(self._base.url, token=self._token, timeout=self._base.timeout) as jobs:
            status = jobs.submit("vectorDatabase.verify", payload,
                                 description=f"verify vector database {vdb_id}")
            return jobs.job(status.status_id)

    def wait_for_job(self, job_id: UUID | str, *, timeout: float | None = None,
                     on_change: Callable[[JobInfo], object] | None = None) -> JobInfo:
        """Wait for a job to end (see `genai_jobs.client.Client.wait`)."""
        with Client(self._base.url, token=self._token, timeout=self._base.timeout) as jobs:
            return jobs.wait(job_id, timeout=timeout, on_change=on_change)

    def get_vector_database(self, vdb_id: UUID | str) -> VectorDatabaseInfo:
        return self._send(Call("GET", f"{API_PREFIX}/vectorDatabases/{vdb_id}/",
                               VectorDatabaseInfo.model_validate,
                               action="read a vector database",
                               subject=f"vector database {vdb_id}"))

    def list_vector_databases(self, limit: int = 100, *, search: str | None = None,
                              completed_only: bool = False, sort: str | None = None,
                              use_case_id: str | None = None) -> list[VectorDatabaseInfo]:
        params = _present({"limit": str(limit), "search": search, "sort": sort,
                           "useCaseId": use_case_id,
                           "completedOnly": "true" if completed_only else None})
        page = self._send(Call("GET", f"{API_PREFIX}/vectorDatabases/", _Page.model_validate,
                               action="list vector databases", params=tuple(params.items())))
        return [VectorDatabaseInfo.model_validate(item) for item in page.data]

    def rename_vector_database(self, vdb_id: UUID | str, name: str) -> VectorDatabaseInfo:
        return self._send(Call("PATCH", f"{API_PREFIX}/vectorDatabases/{vdb_id}/",
                               VectorDatabaseInfo.model_validate,
                               action="rename a vector database",
                               subject=f"vector database {vdb_id}", json={"name": name}))

    def delete_vector_database(self, vdb_id: UUID | str) -> None:
        self._send(Call("DELETE", f"{API_PREFIX}/vectorDatabases/{vdb_id}/", _nothing,
                        action="delete a vector database",
                        subject=f"vector database {vdb_id}"))

    def download_text_and_embeddings(self, vdb_id: UUID | str, path: str | Path) -> Path:
        """Save the chunks, their metadata and vectors as a Parquet file at `path`."""
        call = Call("GET", f"{API_PREFIX}/vectorDatabases/{vdb_id}/textAndEmbeddings/",
                    _nothing, action="download a vector database",
                    subject=f"vector database {vdb_id}", held_seconds=SLOW_CALL_SECONDS)
        target = Path(path)
        try:
            with self._http.stream("GET", call.url,
                                   timeout=self._base.timeout_for(call)) as response:
                if response.status_code != 200:
                    self._base.read(call, response.status_code, response.read())
                with target.open("wb") as out:
                    for block in response.iter_bytes(EXPORT_BLOCK_BYTES):
                        out.write(block)
        except httpx.RequestError as exc:
            raise self._base.transport_error(exc) from None
        return target

    def wait_for_build(self, vdb: VectorDatabaseInfo, *, timeout: float | None = None,
                       on_change: Callable[[JobInfo], object] | None = None) -> JobInfo:
        """Wait for the build job to end (see `genai_jobs.client.Client.wait`)."""
        if vdb.build_status_id is None:
            raise ValueError(f"vector database {vdb.id} has no build job")
        with Client(self._base.url, token=self._token, timeout=self._base.timeout) as jobs:
            return jobs.wait(vdb.build_status_id, timeout=timeout, on_change=on_change)

    def search(self, vdb_id: UUID | str, query: str, k: int = 5, *, active: bool = False,
               filter: dict[str, Any] | None = None, mode: str = "dense") -> list[SearchHit]:
        """The `k` chunks best for `query`: `mode` "dense" (nearest by embedding),
        "keyword" (full-text) or "hybrid" (both fused); `active`: search the family's
        active version instead of `vdb_id` itself; `filter`: only chunks whose metadata
        match it (`{"team": "security", "priority": {"$lte": 2}}`)."""
        body: dict[str, Any] = {"query": query, "k": k, "mode": mode}
        if active:
            body["useActiveVersion"] = True
        if filter is not None:
            body["filter"] = filter
        page = self._send(Call("POST", f"{API_PREFIX}/vectorDatabases/{vdb_id}/search/",
                               _Page.model_validate, action="search a vector database",
                               subject=f"vector database {vdb_id}",
                               json=body, held_seconds=SLOW_CALL_SECONDS))
        return [SearchHit.model_validate(item) for item in page.data]

    def _send(self, call: Call[T], **extra: Any) -> T:
        try:
            response = self._http.request(
                call.method, call.url, params=call.params, json=call.json,
                timeout=self._base.timeout_for(call), **extra)
        except httpx.RequestError as exc:
            raise self._base.transport_error(exc) from None
        return self._base.read(call, response.status_code, response.content)


def bad_files(exc: ValidationFailed) -> tuple[list[FieldError], list[FieldError]]:
    """The errors of a refused upload about its files: (bad files that `skip_bad_files`
    would leave out, the others)."""
    about_files = [error for error in exc.errors if error.loc == ("body", "file")]
    skippable = [error for error in about_files if error.type in SKIPPABLE_TYPES]
    return skippable, [error for error in exc.errors if error not in skippable]


def _nothing(_: Any) -> None:
    return None


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


__all__ = ["DatasetInfo", "SearchHit", "SkippedDocumentInfo", "SkippedFileInfo",
           "TransportError", "VectorClient", "VectorDatabaseInfo", "Versions", "bad_files",
           "upload_body", "upload_files"]
