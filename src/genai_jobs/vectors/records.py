"""Records of datasets and vector databases, and the errors about them.

Like the job records, they are frozen dataclasses built from rows at the store's
edge; the HTTP schemas are built from them. Standard library only.

VectorsError (a DomainError)
 ├── DatasetNotFound         no such dataset for this caller (other tenants' included)
 ├── VectorDatabaseNotFound  no such vector database for this caller
 ├── DatasetRejected         an upload is unusable (an unsafe name, a zip bomb, a limit)
 ├── FilesRejected           an upload's bad files, every one (type, content, size)
 ├── NotBuilt                the vector database cannot be searched (yet)
 └── BuildSuperseded         another attempt owns the build now: this one must stop
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from genai_jobs.domain import DomainError
from genai_jobs.vectors.spooled import Content


class DocumentKind(enum.StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"


class MetadataType(enum.StrEnum):
    """The type of a metadata column, found from its values (a CSV has only text)."""

    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


# A document's metadata: column name to value (str for text and dates, ISO 8601).
MetadataValue = str | int | float | bool
Metadata = Mapping[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class MetadataColumn:
    name: str
    type: MetadataType


@dataclass(frozen=True, slots=True)
class Document:
    """One document of a dataset, with its bytes: a file, a zip member or a CSV row
    (a large uploaded file's bytes still in its upload's temporary file)."""

    name: str
    kind: DocumentKind
    content: Content
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    position: int
    name: str
    kind: DocumentKind
    size_bytes: int
    metadata: Metadata = field(default_factory=dict)
    # sha256 of its bytes, taken at upload (None: uploaded before digests were kept).
    content_digest: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A document as a version of a vector database holds it: its chunks are
    `first_seq` .. `first_seq + chunk_count - 1` (none if it had no text). `digest`
    covers its bytes, type and metadata: an update keeps the chunks of a document
    whose digest did not change."""

    ordinal: int
    name: str
    kind: DocumentKind
    digest: str
    first_seq: int
    chunk_count: int


class UpdateMode(enum.StrEnum):
    """How a version is made from its parent and a dataset."""

    ADD = "add"  # the dataset's documents are added; one of the same name replaces it
    REPLACE = "replace"  # the version holds the dataset's documents and no others


@dataclass(frozen=True, slots=True)
class Family:
    """The versions of one vector database; `active_id` is the version searches of the
    family use (None until one is built)."""

    id: UUID
    tenant: str
    active_id: UUID | None


@dataclass(frozen=True, slots=True)
class BadFile:
    """A file of an upload that cannot be used, named as its document would have been;
    `kind` is the refusal's type (`empty_file`, `corrupt_pdf`, ...)."""

    name: str
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class SkippedDocument:
    """A document that a build left out of its index, and why (it has no text)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class NewDataset:
    id: UUID  # chosen by the caller, so that its URL is known before it is stored
    tenant: str
    name: str
    created_by: str
    documents: Sequence[Document]
    metadata_columns: Sequence[MetadataColumn] = ()
    # The upload's bad files, left out because it asked to skip them.
    skipped_files: Sequence[BadFile] = ()


@dataclass(frozen=True, slots=True)
class Dataset:
    id: UUID
    version_id: UUID
    tenant: str
    name: str
    document_count: int
    total_bytes: int
    metadata_columns: tuple[MetadataColumn, ...]
    created_by: str
    created_at: datetime
    categories: tuple[str, ...] = ()
    skipped_files: tuple[BadFile, ...] = ()


@dataclass(frozen=True, slots=True)
class NewVectorDatabase:
    id: UUID  # chosen by the caller, so that its URL is known before it is stored
    tenant: str
    name: str
    dataset_id: UUID
    dataset_name: str
    embedding_model: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int  # tokens
    chunk_overlap_percentage: int
    separators: tuple[str, ...]
    url: str
    use_case_id: str
    created_by: str
    # Versions: the parent it adds `dataset_id` to, and its family. The store numbers
    # the version (the family's highest plus one) as it inserts it, so that two
    # versions made at once cannot take the same number.
    parent_id: UUID | None = None
    family_id: UUID | None = None  # None: a new family, named by this database's id
    dataset_ids: tuple[UUID, ...] = ()  # every dataset it holds; () means (dataset_id,)
    metadata_columns: tuple[str, ...] = ()
    chunking_method: str = "recursive"
    update_mode: UpdateMode = UpdateMode.ADD


@dataclass(frozen=True, slots=True)
class VectorDatabase:
    id: UUID
    tenant: str
    name: str
    dataset_id: UUID
    dataset_name: str
    embedding_model: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    chunk_overlap_percentage: int
    separators: tuple[str, ...]
    chunking_method: str
    url: str
    use_case_id: str
    created_by: str
    parent_id: UUID | None
    family_id: UUID
    version: int
    dataset_ids: tuple[UUID, ...]
    metadata_columns: tuple[str, ...]
    build_job_id: UUID | None
    build_id: UUID | None
    chunk_count: int
    size_bytes: int
    built_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # The documents of its datasets left out of the index, its parent's first; written
    # when the build finishes.
    skipped_documents: tuple[SkippedDocument, ...] = ()
    update_mode: UpdateMode = UpdateMode.ADD
    # What the build changed from the parent (`Changes.as_json`); {} until built.
    changes: Mapping[str, object] = field(default_factory=dict)

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
    metadata: Metadata = field(default_factory=dict)  # its document's
    content_key: str = ""  # vectors/plan.py content_key
    kind: DocumentKind | None = None  # its document's


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int  # the chunk's index within the vector database (its vector's row)
    document: str
    position: int
    page: int | None
    start_char: int
    end_char: int
    text: str
    metadata: Metadata = field(default_factory=dict)
    kind: DocumentKind | None = None  # None for chunks built before types were kept


@dataclass(frozen=True, slots=True)
class CopiedRange:
    """Chunks `parent_first` .. `parent_first + count - 1` of the parent, copied as
    `first_seq` .. of the version being built."""

    parent_first: int
    count: int
    first_seq: int


@dataclass(frozen=True, slots=True)
class BuildOutcome:
    """What a finished build writes at once: its size, the documents it holds, those
    left out for having no text, and what changed from its parent."""

    chunk_count: int
    size_bytes: int
    records: Sequence[DocumentRecord]
    skipped: Sequence[SkippedDocument]
    changes: Mapping[str, object]
    parent_id: UUID | None


# A chunk's filterable fields: document name, document type (None before types were
# kept), PDF page, and its document's metadata.
ChunkFields = tuple[str, str | None, int | None, Metadata]


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


class SortKey(enum.StrEnum):
    """What vector databases may be listed by (DataRobot's sort names, less the dash)."""

    NAME = "name"
    CREATION_DATE = "creationDate"
    LAST_UPDATE_DATE = "lastUpdateDate"
    CREATION_USER_ID = "creationUserId"
    USER_NAME = "userName"
    EMBEDDING_MODEL = "embeddingModel"
    DATASET_ID = "datasetId"
    DATASET_NAME = "datasetName"
    CHUNKING_METHOD = "chunkingMethod"
    CHUNKS_COUNT = "chunksCount"
    SIZE = "size"
    # Every vector database here has 0 playgrounds and the source DataRobot: these
    # sort as creationDate does.
    PLAYGROUNDS_COUNT = "playgroundsCount"
    SOURCE = "source"


@dataclass(frozen=True, slots=True)
class VectorDatabaseQuery:
    """A page of vector databases, filtered and sorted (newest first by default)."""

    page: Page
    search: str | None = None  # part of the name, any case
    completed_only: bool = False
    use_case_ids: tuple[str, ...] = ()
    sort: SortKey = SortKey.CREATION_DATE
    descending: bool = True


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

    @property
    def bad_file(self) -> BadFile:
        return BadFile(self.name, self.kind, self.reason)


class FilesRejected(VectorsError):
    """Files of an upload that cannot be used, all of them, found in one pass (and, when
    the upload asked to skip bad files, every one of its files was bad)."""

    def __init__(self, files: Sequence[BadFile]) -> None:
        super().__init__("; ".join(f"{file.name}: {file.reason}" for file in files))
        self.files = tuple(files)


class NotBuilt(VectorsError):
    pass


class BuildSuperseded(VectorsError):
    def __init__(self, vdb_id: object) -> None:
        super().__init__(f"the build of vector database {vdb_id} was taken over or deleted")
