"""Records of datasets and vector databases, and the errors about them.

Like the job records, they are frozen dataclasses built from rows at the store's
edge; the HTTP schemas are built from them. Standard library only.

VectorsError (a DomainError)
 ├── DatasetNotFound         no such dataset for this caller (other tenants' included)
 ├── VectorDatabaseNotFound  no such vector database for this caller
 ├── DatasetRejected         an uploaded file is unusable (type, size, archive, name)
 ├── NotBuilt                the vector database cannot be searched (yet)
 └── BuildSuperseded         another attempt owns the build now: this one must stop
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from genai_jobs.domain import DomainError


class DocumentKind(enum.StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"


@dataclass(frozen=True, slots=True)
class Document:
    """One file of a dataset, with its bytes (a zip contributes one per member)."""

    name: str
    kind: DocumentKind
    content: bytes


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    position: int
    name: str
    kind: DocumentKind
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Dataset:
    id: UUID
    tenant: str
    name: str
    files: list[DocumentInfo]
    total_bytes: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewVectorDatabase:
    id: UUID  # chosen by the caller, so that its URL is known before it is stored
    tenant: str
    name: str
    dataset_id: UUID
    embedding_model: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    url: str


@dataclass(frozen=True, slots=True)
class VectorDatabase:
    id: UUID
    tenant: str
    name: str
    dataset_id: UUID
    embedding_model: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    url: str
    build_job_id: UUID | None
    build_id: UUID | None
    chunk_count: int
    built_at: datetime | None
    created_at: datetime

    @property
    def is_built(self) -> bool:
        return self.built_at is not None


@dataclass(frozen=True, slots=True)
class NewChunk:
    document: str
    position: int  # the chunk's index within its document
    page: int | None  # 1-based page of a PDF where the chunk starts
    start_char: int
    end_char: int
    text: str


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int  # the chunk's index within the vector database (its vector's row)
    document: str
    position: int
    page: int | None
    start_char: int
    end_char: int
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float


@dataclass(frozen=True, slots=True)
class Page:
    """A page of a tenant's datasets or vector databases, newest first."""

    tenant: str | None
    offset: int = 0
    limit: int = 100


class VectorsError(DomainError):
    """Base of the errors of datasets and vector databases."""


class DatasetNotFound(VectorsError):
    def __init__(self, dataset_id: object) -> None:
        super().__init__(f"dataset {dataset_id} not found")


class VectorDatabaseNotFound(VectorsError):
    def __init__(self, vdb_id: object) -> None:
        super().__init__(f"vector database {vdb_id} not found")


class DatasetRejected(VectorsError):
    """An uploaded file cannot be used; `name` is the file (or archive member) at fault."""

    def __init__(self, name: str, reason: str, kind: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.kind = kind


class NotBuilt(VectorsError):
    pass


class BuildSuperseded(VectorsError):
    def __init__(self, vdb_id: object) -> None:
        super().__init__(f"the build of vector database {vdb_id} was taken over or deleted")
