"""A blocking Python client for datasets, vector databases and search.

It speaks HTTP only and imports nothing of the server, like `genai_jobs.client`,
whose errors it raises (NotFound, ValidationFailed, Conflict, ...) and whose
`Client.wait` follows a build:

    with VectorClient(url, token=token) as vectors:
        dataset = vectors.upload_dataset(["docs/"])
        vdb = vectors.create_vector_database(dataset.id, "docs")
        vectors.wait_for_build(vdb, timeout=600)
        for hit in vectors.search(vdb.id, "How do I rotate a token?", k=3):
            print(hit.score, hit.document_name, hit.text)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict, Field

from genai_jobs.client import Client, JobInfo, TransportError
from genai_jobs.client._base import DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL, BaseClient, Call

T = TypeVar("T")
API_PREFIX = "/api/v2/genai"
# What the server accepts (genai_jobs.vectors.datasets), repeated here so that the
# client needs nothing of the server: other files in a folder are left out.
UPLOAD_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".zip")
# Embedding a large dataset takes a while: uploads and searches may be slow to answer.
SLOW_CALL_SECONDS = 300.0


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class DatasetFile(_Model):
    name: str
    size: int
    type: str


class DatasetInfo(_Model):
    id: UUID
    name: str
    files: list[DatasetFile]
    total_size: int = Field(alias="totalSize")
    created: datetime


class VectorDatabaseInfo(_Model):
    id: UUID
    name: str
    dataset_id: UUID = Field(alias="datasetId")
    embedding_model: str = Field(alias="embeddingModel")
    dimensions: int
    chunk_size: int = Field(alias="chunkSize")
    chunk_overlap: int = Field(alias="chunkOverlap")
    chunk_count: int = Field(alias="chunkCount")
    execution_status: str = Field(alias="executionStatus")
    error_message: str = Field(default="", alias="errorMessage")
    build_status_id: UUID | None = Field(alias="buildStatusId")
    created: datetime


class SearchHit(_Model):
    text: str
    score: float
    document_name: str = Field(alias="documentName")
    chunk_index: int = Field(alias="chunkIndex")
    start_char: int = Field(alias="startChar")
    end_char: int = Field(alias="endChar")
    page: int | None = None


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
    def upload_dataset(self, paths: Iterable[str | Path], name: str | None = None) -> DatasetInfo:
        files = upload_files(paths)
        if not files:
            raise ValueError("no files to upload (supported: " + ", ".join(UPLOAD_SUFFIXES) + ")")
        parts = [("files", (shown, file.read_bytes(), "application/octet-stream"))
                 for shown, file in files]
        call = Call("POST", f"{API_PREFIX}/datasets/", DatasetInfo.model_validate,
                    action="upload a dataset", held_seconds=SLOW_CALL_SECONDS)
        return self._send(call, files=parts, data={"name": name} if name else None)

    def get_dataset(self, dataset_id: UUID | str) -> DatasetInfo:
        return self._send(Call("GET", f"{API_PREFIX}/datasets/{dataset_id}/",
                               DatasetInfo.model_validate, action="read a dataset",
                               subject=f"dataset {dataset_id}"))

    def list_datasets(self, limit: int = 100) -> list[DatasetInfo]:
        page = self._send(Call("GET", f"{API_PREFIX}/datasets/", _Page.model_validate,
                               action="list datasets", params=(("limit", str(limit)),)))
        return [DatasetInfo.model_validate(item) for item in page.data]

    def delete_dataset(self, dataset_id: UUID | str) -> None:
        self._send(Call("DELETE", f"{API_PREFIX}/datasets/{dataset_id}/", _nothing,
                        action="delete a dataset", subject=f"dataset {dataset_id}"))

    # -- vector databases ---------------------------------------------------
    def create_vector_database(
        self, dataset_id: UUID | str, name: str, *, chunk_size: int | None = None,
        chunk_overlap: int | None = None, embedding_model: str | None = None,
        expires_in: float | None = None, max_attempts: int | None = None,
    ) -> VectorDatabaseInfo:
        chunking = {key: value for key, value in
                    (("chunkSize", chunk_size), ("chunkOverlap", chunk_overlap))
                    if value is not None}
        body: dict[str, Any] = {"datasetId": str(dataset_id), "name": name, "chunking": chunking}
        options = {"embeddingModel": embedding_model, "expiresIn": expires_in,
                   "maxAttempts": max_attempts}
        body.update({key: value for key, value in options.items() if value is not None})
        return self._send(Call("POST", f"{API_PREFIX}/vectorDatabases/",
                               VectorDatabaseInfo.model_validate,
                               action="create a vector database", json=body))

    def get_vector_database(self, vdb_id: UUID | str) -> VectorDatabaseInfo:
        return self._send(Call("GET", f"{API_PREFIX}/vectorDatabases/{vdb_id}/",
                               VectorDatabaseInfo.model_validate,
                               action="read a vector database",
                               subject=f"vector database {vdb_id}"))

    def list_vector_databases(self, limit: int = 100) -> list[VectorDatabaseInfo]:
        page = self._send(Call("GET", f"{API_PREFIX}/vectorDatabases/", _Page.model_validate,
                               action="list vector databases", params=(("limit", str(limit)),)))
        return [VectorDatabaseInfo.model_validate(item) for item in page.data]

    def delete_vector_database(self, vdb_id: UUID | str) -> None:
        self._send(Call("DELETE", f"{API_PREFIX}/vectorDatabases/{vdb_id}/", _nothing,
                        action="delete a vector database",
                        subject=f"vector database {vdb_id}"))

    def wait_for_build(self, vdb: VectorDatabaseInfo, *, timeout: float | None = None,
                       on_change: Callable[[JobInfo], object] | None = None) -> JobInfo:
        """Wait for the build job to end (see `genai_jobs.client.Client.wait`)."""
        if vdb.build_status_id is None:
            raise ValueError(f"vector database {vdb.id} has no build job")
        with Client(self._base.url, token=self._token, timeout=self._base.timeout) as jobs:
            return jobs.wait(vdb.build_status_id, timeout=timeout, on_change=on_change)

    def search(self, vdb_id: UUID | str, query: str, k: int = 5) -> list[SearchHit]:
        page = self._send(Call("POST", f"{API_PREFIX}/vectorDatabases/{vdb_id}/search/",
                               _Page.model_validate, action="search a vector database",
                               subject=f"vector database {vdb_id}",
                               json={"query": query, "k": k}, held_seconds=SLOW_CALL_SECONDS))
        return [SearchHit.model_validate(item) for item in page.data]

    def _send(self, call: Call[T], **extra: Any) -> T:
        try:
            response = self._http.request(
                call.method, call.url, params=call.params, json=call.json,
                timeout=self._base.timeout_for(call), **extra)
        except httpx.RequestError as exc:
            raise self._base.transport_error(exc) from None
        return self._base.read(call, response.status_code, response.content)


def _nothing(_: Any) -> None:
    return None


__all__ = ["DatasetInfo", "SearchHit", "TransportError", "VectorClient", "VectorDatabaseInfo",
           "upload_files"]
