"""The HTTP shapes of datasets, vector databases and search (camelCase, like the job API)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from genai_jobs.api.schemas import CamelModel
from genai_jobs.domain import Job, JobState
from genai_jobs.vectors.embeddings import DEFAULT_MODEL
from genai_jobs.vectors.records import Dataset, Hit, VectorDatabase

MAX_NAME_CHARS = 200
MAX_QUERY_CHARS = 10_000
MAX_K = 100
DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 20


class ExecutionStatus(StrEnum):
    """A vector database's state, named as DataRobot names it."""

    NEW = "NEW"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"


class DatasetFileResponse(CamelModel):
    name: str
    size: int = Field(description="Bytes.")
    type: str = Field(description="text, markdown, html or pdf.")


class DatasetResponse(CamelModel):
    id: UUID
    name: str
    files: list[DatasetFileResponse]
    file_count: int
    total_size: int = Field(description="Bytes, of all files (archives counted expanded).")
    created: datetime

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> DatasetResponse:
        return cls(id=dataset.id, name=dataset.name, file_count=len(dataset.files),
                   files=[DatasetFileResponse(name=info.name, size=info.size_bytes,
                                              type=info.kind.value) for info in dataset.files],
                   total_size=dataset.total_bytes, created=dataset.created_at)


class DatasetListResponse(CamelModel):
    count: int
    next: str | None
    previous: str | None
    data: list[DatasetResponse]
    total_count: int


class _Request(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid")


class ChunkingRequest(_Request):
    chunk_size: int = Field(default=DEFAULT_CHUNK_TOKENS, ge=1,
                            description="Tokens per chunk, in the embedding model's tokens.")
    chunk_overlap: int = Field(default=DEFAULT_OVERLAP_TOKENS, ge=0,
                               description="Tokens each chunk shares with the one before.")


class VectorDatabaseCreateRequest(_Request):
    dataset_id: UUID
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    chunking: ChunkingRequest = Field(default_factory=ChunkingRequest)
    embedding_model: str = Field(default=DEFAULT_MODEL, min_length=1, max_length=200)
    expires_in: float | None = Field(default=None, gt=0, description="Seconds the build may "
                                     "take before it is stopped and its job EXPIRED.")
    max_attempts: int | None = Field(default=None, ge=1)


class VectorDatabaseResponse(CamelModel):
    id: UUID
    name: str
    dataset_id: UUID
    embedding_model: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    chunk_count: int = Field(description="Chunks indexed; 0 until COMPLETED.")
    execution_status: ExecutionStatus
    error_message: str = ""
    build_status_id: UUID | None
    created: datetime

    @classmethod
    def from_records(cls, vdb: VectorDatabase, job: Job | None) -> VectorDatabaseResponse:
        status, error = execution_status(vdb, job)
        return cls(id=vdb.id, name=vdb.name, dataset_id=vdb.dataset_id,
                   embedding_model=vdb.embedding_model, dimensions=vdb.dimensions,
                   chunk_size=vdb.chunk_size, chunk_overlap=vdb.chunk_overlap,
                   chunk_count=vdb.chunk_count if status is ExecutionStatus.COMPLETED else 0,
                   execution_status=status, error_message=error,
                   build_status_id=vdb.build_job_id, created=vdb.created_at)


def execution_status(vdb: VectorDatabase, job: Job | None) -> tuple[ExecutionStatus, str]:
    """The state of a vector database follows its build job's, so the two never disagree;
    `job` None means the job is gone (purged after its retention)."""
    if job is None:
        if vdb.is_built:
            return ExecutionStatus.COMPLETED, ""
        return ExecutionStatus.ERROR, "its build job is gone and the build never finished"
    if job.status is JobState.INITIALIZED:
        return (ExecutionStatus.NEW, "") if job.attempts == 0 else (ExecutionStatus.RUNNING, "")
    if job.status is JobState.RUNNING:
        return ExecutionStatus.RUNNING, ""
    if job.status is JobState.COMPLETED and vdb.is_built:
        return ExecutionStatus.COMPLETED, ""
    return ExecutionStatus.ERROR, f"build {job.status.value}: {job.message}".rstrip(": ")


class VectorDatabaseListResponse(CamelModel):
    count: int
    next: str | None
    previous: str | None
    data: list[VectorDatabaseResponse]
    total_count: int


class SearchRequest(_Request):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=5, ge=1, le=MAX_K)


class SearchHitResponse(CamelModel):
    text: str
    score: float = Field(description="Cosine similarity to the query (higher is closer).")
    document_name: str
    chunk_index: int = Field(description="The chunk's position in its document (from 0).")
    start_char: int = Field(description="Where the chunk starts in the document's text.")
    end_char: int
    page: int | None = Field(description="The PDF page where the chunk starts (from 1).")

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchHitResponse:
        chunk = hit.chunk
        return cls(text=chunk.text, score=hit.score, document_name=chunk.document,
                   chunk_index=chunk.position, start_char=chunk.start_char,
                   end_char=chunk.end_char, page=chunk.page)


class SearchResponse(CamelModel):
    vector_database_id: UUID
    count: int
    data: list[SearchHitResponse]
