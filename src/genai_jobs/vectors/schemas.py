"""The HTTP shapes of datasets, vector databases and search.

Datasets and vector databases have DataRobot's shapes, field for field, because
DataRobot's own SDK reads them and checks its required keys (a key sent as
`null` counts as missing there, so every required one has a real value). Our
extensions are extra keys that the SDK ignores (`buildStatusId`, `dimensions`,
`skippedDocuments`, `metadataColumns` and `skippedFiles` of a dataset) and the
search route, which DataRobot lacks.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints
from pydantic.alias_generators import to_camel

from genai_jobs.api.schemas import CamelModel
from genai_jobs.domain import Job, JobState
from genai_jobs.vectors.records import Dataset, Hit, Metadata, UpdateMode, VectorDatabase

MAX_NAME_CHARS = 200
MAX_USE_CASE_CHARS = 200
MAX_QUERY_CHARS = 10_000
MAX_K = 100
MAX_SEPARATORS = 10
MAX_SEPARATOR_CHARS = 20
MAX_OVERLAP_PERCENTAGE = 50
CHUNKING_METHOD = "recursive"
# DataRobot's default separators for recursive chunking: paragraphs, lines, words,
# and at last token windows ("").
DEFAULT_SEPARATORS = ("\n\n", "\n", " ", "")
# The use case of a vector database created without one (DataRobot requires one;
# our own client and CLI may leave it out).
DEFAULT_USE_CASE = "default"
# What every vector database built here is, in DataRobot's vocabulary.
SOURCE = "DataRobot"


class ExecutionStatus(StrEnum):
    """A vector database's state, named as DataRobot names it."""

    NEW = "NEW"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"


class MetadataColumnResponse(CamelModel):
    name: str
    type: str = Field(description="text, number, boolean or date.")


class SkippedFileResponse(CamelModel):
    name: str = Field(description="As its document would have been named.")
    type: str = Field(description="Why, as the type of a 422 names it (empty_file, ...).")
    reason: str


class DatasetResponse(CamelModel):
    """DataRobot's dataset (what `datarobot.Dataset` reads), plus `metadataColumns` and
    `skippedFiles`."""

    dataset_id: UUID
    version_id: UUID
    name: str
    categories: list[str] = Field(default_factory=list)
    creation_date: datetime
    created_by: str
    data_persisted: bool = True
    is_data_engine_eligible: bool = False
    is_latest_version: bool = True
    is_snapshot: bool = True
    processing_state: str = Field(default="COMPLETED", description="Always COMPLETED: an "
                                  "upload is ingested before it is answered.")
    dataset_size: int = Field(description="Bytes of the documents (archives expanded).")
    row_count: int = Field(description="Documents: files, archive members or CSV rows.")
    metadata_columns: list[MetadataColumnResponse] = Field(
        description="Extension: a CSV's metadata columns and their types.")
    skipped_files: list[SkippedFileResponse] = Field(
        description="Extension: the upload's bad files, left out because it asked to skip "
                    "them (skipBadFiles), and why; [] when none was.")

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> DatasetResponse:
        return cls(dataset_id=dataset.id, version_id=dataset.version_id, name=dataset.name,
                   categories=list(dataset.categories), creation_date=dataset.created_at,
                   created_by=dataset.created_by,
                   dataset_size=dataset.total_bytes, row_count=dataset.document_count,
                   metadata_columns=[MetadataColumnResponse(name=column.name,
                                                            type=column.type.value)
                                     for column in dataset.metadata_columns],
                   skipped_files=[SkippedFileResponse(name=file.name, type=file.kind,
                                                      reason=file.reason)
                                  for file in dataset.skipped_files])


class DatasetListResponse(CamelModel):
    count: int
    next: str | None
    previous: str | None
    data: list[DatasetResponse]
    total_count: int


class _Request(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid")


class DatasetCategory(StrEnum):
    """What a dataset is meant for, in DataRobot's words (kept, not acted on)."""

    TRAINING = "TRAINING"
    PREDICTION = "PREDICTION"


class DatasetUpdateRequest(_Request):
    """DataRobot's `Dataset.modify`: a new name and/or categories."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    categories: list[DatasetCategory] | None = Field(default=None, max_length=2)


Separator = Annotated[str, StringConstraints(max_length=MAX_SEPARATOR_CHARS)]


class ChunkingParametersRequest(_Request):
    """DataRobot's `chunkingParameters`; what this server cannot do is refused by name."""

    embedding_model: str | None = Field(default=None, max_length=200)
    embedding_validation_id: str | None = Field(
        default=None, description="Not supported: custom embedding models are not served.")
    chunking_method: str | None = Field(default=None, max_length=50,
                                        description="`recursive` (the default).")
    chunk_size: StrictInt | None = Field(default=None, ge=1, description="Tokens per chunk, in the "
                                   "embedding model's tokens (default: what it reads whole).")
    chunk_overlap_percentage: StrictInt | None = Field(default=None, ge=0,
                                                 le=MAX_OVERLAP_PERCENTAGE)
    separators: list[Separator] | None = Field(default=None, max_length=MAX_SEPARATORS)
    custom_chunking: StrictBool = Field(default=False, description="Not supported (must be false).")
    is_separator_regex: StrictBool = Field(default=False, description="Not supported: separators "
                                     "are plain text.")


class VectorDatabaseCreateRequest(_Request):
    """DataRobot's body of `POST /genai/vectorDatabases/`, as its SDK sends it."""

    dataset_id: UUID
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS,
                             description="Default: 'Vector Database for <dataset name>'.")
    use_case_id: str | None = Field(default=None, min_length=1, max_length=MAX_USE_CASE_CHARS,
                                    description="Kept as a label (a filter of the list).")
    chunking_parameters: ChunkingParametersRequest = Field(
        default_factory=ChunkingParametersRequest)
    parent_vector_database_id: UUID | None = Field(
        default=None, description="Make a new version of this vector database's family: its "
        "chunks (reused, not embedded again) plus the dataset's.")
    update_llm_blueprints: StrictBool | None = Field(
        default=None, description="Accepted; there are no LLM blueprints here to update.")
    update_deployments: StrictBool | None = Field(
        default=None, description="Accepted; there are no deployments here to update.")
    expires_in: StrictFloat | None = Field(default=None, gt=0, description="Extension: seconds the "
                                     "build may take before it is stopped and its job EXPIRED.")
    max_attempts: StrictInt | None = Field(default=None, ge=1, description="Extension.")


class VectorDatabaseUpdateRequest(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    credential_id: str | None = Field(default=None, description="Not supported: no "
                                      "connected vector databases here.")


class SkippedDocumentResponse(CamelModel):
    name: str
    reason: str


class VectorDatabaseResponse(CamelModel):
    """DataRobot's vector database (every key its SDK requires), plus extensions."""

    id: UUID
    name: str
    size: int = Field(description="Bytes of chunk text and vectors.")
    use_case_id: str
    dataset_id: UUID
    embedding_model: str
    chunking_method: str
    chunk_size: int
    chunk_overlap_percentage: int
    chunks_count: int = Field(description="Chunks indexed; 0 until COMPLETED.")
    custom_chunking: bool = False
    separators: list[str]
    creation_date: datetime
    creation_user_id: str
    organization_id: str
    tenant_id: str
    last_update_date: datetime
    execution_status: ExecutionStatus
    playgrounds_count: int = 0
    dataset_name: str
    user_name: str
    source: str = SOURCE
    validation_id: str | None = None
    error_message: str | None = None
    embedding_validation_id: str | None = None
    is_separator_regex: bool = False
    parent_id: UUID | None
    family_id: UUID
    metadata_columns: list[str]
    added_dataset_ids: list[UUID] = Field(description="Every dataset whose documents this "
                                          "version holds, in the order they were added.")
    added_dataset_names: list[str] | None = None
    version: int
    external_vector_database_connection: dict[str, Any] | None = None
    metadata_dataset_id: str | None = None
    metadata_dataset_name: str | None = None
    metadata_combination_strategy: str | None = None
    added_metadata_dataset_pairs: list[dict[str, str]] | None = None
    # Extensions.
    build_status_id: UUID | None = Field(description="Extension: the job that builds it.")
    dimensions: int = Field(description="Extension: the length of its vectors.")
    skipped_documents: list[SkippedDocumentResponse] = Field(
        description="Extension: the documents of its datasets left out of the index because "
                    "they have no text (a scanned PDF), and why; its parent's first. Known "
                    "once the build has finished: [] until then.")
    update_mode: UpdateMode = Field(description="Extension: how this version was made from "
                                    "its parent: `add` (the dataset's documents added, one of "
                                    "the same name replaced) or `replace` (the dataset's "
                                    "documents and no others).")
    changes: dict[str, Any] = Field(description="Extension: what the build changed from its "
                                    "parent, `documents` and `chunks` each counted as added, "
                                    "updated, skipped (unchanged) and deleted, and of the "
                                    "chunks how many were `embedded` and `reused`; {} until "
                                    "COMPLETED.")

    @classmethod
    def from_records(cls, vdb: VectorDatabase, job: Job | None) -> VectorDatabaseResponse:
        status, error = execution_status(vdb, job)
        return cls(
            id=vdb.id, name=vdb.name, size=vdb.size_bytes, use_case_id=vdb.use_case_id,
            dataset_id=vdb.dataset_id, embedding_model=vdb.embedding_model,
            chunking_method=vdb.chunking_method, chunk_size=vdb.chunk_size,
            chunk_overlap_percentage=vdb.chunk_overlap_percentage,
            chunks_count=vdb.chunk_count if status is ExecutionStatus.COMPLETED else 0,
            separators=list(vdb.separators), creation_date=vdb.created_at,
            creation_user_id=vdb.created_by, organization_id=vdb.tenant, tenant_id=vdb.tenant,
            last_update_date=vdb.updated_at, execution_status=status,
            dataset_name=vdb.dataset_name, user_name=vdb.tenant, error_message=error or None,
            parent_id=vdb.parent_id, family_id=vdb.family_id,
            metadata_columns=list(vdb.metadata_columns),
            added_dataset_ids=list(vdb.dataset_ids), version=vdb.version,
            build_status_id=vdb.build_job_id, dimensions=vdb.dimensions,
            skipped_documents=[SkippedDocumentResponse(name=document.name,
                                                       reason=document.reason)
                               for document in vdb.skipped_documents],
            update_mode=vdb.update_mode,
            changes=dict(vdb.changes) if status is ExecutionStatus.COMPLETED else {})


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


class CountResponse(CamelModel):
    """DataRobot's user limit counter (`UserLimits.get_vector_database_count`)."""

    counter: int


class SearchRequest(_Request):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: StrictInt = Field(default=5, ge=1, le=MAX_K)
    use_active_version: StrictBool = Field(
        default=False, description="Search the active version of this vector database's "
        "family (the one its completed updates and rollbacks point at) instead of this "
        "version.")
    mode: Literal["dense", "keyword", "hybrid"] = Field(
        default="dense", description="dense: nearest by embedding (score: cosine); keyword: "
        "the store's full-text ranking of the query's terms (SQLite FTS5's BM25, PostgreSQL's "
        "ts_rank_cd; score: that rank); hybrid: both, fused by reciprocal rank (score: the "
        "fused score), for exact tokens and paraphrases alike.")
    keyword_weight: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=10, description="Hybrid mode: how much the keyword ranking "
        "counts beside the dense one (weighted reciprocal rank fusion, the dense ranking "
        "1). Default: 2 when the query holds a term with a digit or letters joined by - _ . "
        "/ (an error code, a part number, a version), else 0 (the dense ranking).")
    filter: dict[str, Any] | None = Field(
        default=None, description="Only chunks whose metadata match, e.g. "
        '`{"team": "security", "priority": {"$lte": 2}}`; fields are the metadata columns '
        "and $documentName, $documentType, $page; operators $eq, $ne, $in, $nin, $gt, $gte, "
        "$lt, $lte, combined with $and and $or. Applied before the nearest chunks are taken, "
        "not after.")


class SearchHitResponse(CamelModel):
    text: str
    score: float = Field(description="Higher is better: in dense mode the cosine similarity "
                         "to the query; in keyword mode the store's full-text rank; in hybrid "
                         "mode the reciprocal rank fusion of the two.")
    document_name: str
    chunk_index: int = Field(description="The chunk's position in its document (from 0).")
    start_char: int = Field(description="Where the chunk starts in the document's text.")
    end_char: int
    page: int | None = Field(description="The PDF page where the chunk starts (from 1).")
    metadata: Metadata = Field(description="Its document's metadata (a CSV row's columns).")

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchHitResponse:
        chunk = hit.chunk
        return cls(text=chunk.text, score=hit.score, document_name=chunk.document,
                   chunk_index=chunk.position, start_char=chunk.start_char,
                   end_char=chunk.end_char, page=chunk.page, metadata=chunk.metadata)


class SearchResponse(CamelModel):
    vector_database_id: UUID = Field(description="The version that answered.")
    version: int
    mode: str
    count: int
    data: list[SearchHitResponse]


class VersionCreateRequest(_Request):
    """Extension: a new version of a vector database's family from a dataset."""

    dataset_id: UUID
    mode: UpdateMode = Field(description="`add`: the dataset's documents are added to the "
                             "parent's, a document of the same name replacing the parent's; "
                             "`replace`: the version holds the dataset's documents and no "
                             "others (the parent's others are deleted from it).")
    parent_vector_database_id: UUID | None = Field(
        default=None, description="The version to start from (default: the family's active "
        "version).")
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS,
                             description="Default: the parent's name.")
    expires_in: StrictFloat | None = Field(default=None, gt=0, description="Seconds the build "
                                           "may take before it is stopped and its job EXPIRED.")
    max_attempts: StrictInt | None = Field(default=None, ge=1)


class ActiveVersionRequest(_Request):
    vector_database_id: UUID = Field(description="A COMPLETED version of the family.")


class VersionsResponse(CamelModel):
    """Extension: a family's versions, oldest first, and the one its searches use."""

    family_id: UUID
    active_version_id: UUID | None = Field(description="The version that answers searches of "
                                           "the family (None until one is COMPLETED).")
    count: int
    data: list[VectorDatabaseResponse]
