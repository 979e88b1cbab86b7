"""Records built from rows of either store: one mapping, each store's own conversions.

SQLite hands back text ids, epoch seconds and JSON text; PostgreSQL hands back
UUIDs, datetimes and decoded JSON. `Decoder` says how to read each kind once,
so the field-by-field mapping of a record is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from genai_jobs.vectors.records import (
    BadFile,
    Chunk,
    Dataset,
    DocumentInfo,
    DocumentKind,
    MetadataColumn,
    MetadataType,
    SkippedDocument,
    VectorDatabase,
    VectorDatabaseQuery,
)


class Row(Protocol):
    """A row read by column name: sqlite3.Row, or psycopg's dict row."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Decoder:
    uuid: Callable[[Any], UUID]
    time: Callable[[Any], datetime]
    json: Callable[[Any], Any]

    def maybe_uuid(self, value: Any) -> UUID | None:
        return None if value is None else self.uuid(value)

    def maybe_time(self, value: Any) -> datetime | None:
        return None if value is None else self.time(value)


def metadata_columns(value: Any) -> tuple[MetadataColumn, ...]:
    return tuple(MetadataColumn(column["name"], MetadataType(column["type"]))
                 for column in value)


def columns_json(columns: tuple[MetadataColumn, ...] | list[MetadataColumn]) -> list[Any]:
    return [{"name": column.name, "type": column.type.value} for column in columns]


def bad_files_json(files: Sequence[BadFile]) -> list[Any]:
    return [{"name": file.name, "type": file.kind, "reason": file.reason} for file in files]


def bad_files(value: Any) -> tuple[BadFile, ...]:
    return tuple(BadFile(item["name"], item["type"], item["reason"]) for item in value)


def skipped_documents_json(documents: Sequence[SkippedDocument]) -> list[Any]:
    return [{"name": document.name, "reason": document.reason} for document in documents]


def dataset(row: Row, decode: Decoder, document_count: int) -> Dataset:
    return Dataset(id=decode.uuid(row["id"]), version_id=decode.uuid(row["version_id"]),
                   tenant=row["tenant"], name=row["name"], document_count=document_count,
                   total_bytes=row["total_bytes"],
                   metadata_columns=metadata_columns(decode.json(row["metadata_columns"])),
                   created_by=row["created_by"], created_at=decode.time(row["created_at"]),
                   categories=tuple(decode.json(row["categories"])),
                   skipped_files=bad_files(decode.json(row["skipped_files"])))


def document_info(row: Row, decode: Decoder) -> DocumentInfo:
    return DocumentInfo(row["position"], row["name"], DocumentKind(row["kind"]),
                        row["size_bytes"], decode.json(row["metadata"]))


def chunk(row: Row, decode: Decoder) -> Chunk:
    return Chunk(row["seq"], row["document"], row["position"], row["page"], row["start_char"],
                 row["end_char"], row["text"], decode.json(row["metadata"]))


def vector_database(row: Row, decode: Decoder) -> VectorDatabase:
    return VectorDatabase(
        id=decode.uuid(row["id"]), tenant=row["tenant"], name=row["name"],
        dataset_id=decode.uuid(row["dataset_id"]), dataset_name=row["dataset_name"],
        embedding_model=row["embedding_model"], dimensions=row["dimensions"],
        chunk_size=row["chunk_size"], chunk_overlap=row["chunk_overlap"],
        chunk_overlap_percentage=row["chunk_overlap_percentage"],
        separators=tuple(decode.json(row["separators"])),
        chunking_method=row["chunking_method"], url=row["url"],
        use_case_id=row["use_case_id"], created_by=row["created_by"],
        parent_id=decode.maybe_uuid(row["parent_id"]), family_id=decode.uuid(row["family_id"]),
        version=row["version"],
        dataset_ids=tuple(UUID(str(value)) for value in decode.json(row["dataset_ids"])),
        metadata_columns=tuple(decode.json(row["metadata_columns"])),
        build_job_id=decode.maybe_uuid(row["build_job_id"]),
        build_id=decode.maybe_uuid(row["build_id"]), chunk_count=row["chunk_count"],
        size_bytes=row["size_bytes"], built_at=decode.maybe_time(row["built_at"]),
        created_at=decode.time(row["created_at"]), updated_at=decode.time(row["updated_at"]),
        skipped_documents=tuple(SkippedDocument(item["name"], item["reason"])
                                for item in decode.json(row["skipped_documents"])))


# Columns a listing may be sorted by, for each sort key (SortKey values).
SORT_COLUMNS = {
    "name": "name",
    "creationDate": "created_at",
    "lastUpdateDate": "updated_at",
    "creationUserId": "created_by",
    "userName": "created_by",
    "embeddingModel": "embedding_model",
    "datasetId": "dataset_id",
    "datasetName": "dataset_name",
    "chunkingMethod": "chunking_method",
    "chunksCount": "chunk_count",
    "size": "size_bytes",
    "playgroundsCount": "created_at",
    "source": "created_at",
}


def listing_sql(query: VectorDatabaseQuery, mark: str, like: str) -> tuple[str, str, list[Any]]:
    """The WHERE and ORDER BY clauses of a listing and the WHERE's parameters; `mark` is
    the store's placeholder, `like` its case-insensitive LIKE."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.page.tenant is not None:
        clauses.append(f"tenant = {mark}")
        params.append(query.page.tenant)
    if query.search:
        clauses.append(f"name {like} {mark} ESCAPE '\\'")
        params.append(f"%{_escape_like(query.search)}%")
    if query.completed_only:
        clauses.append("built_at IS NOT NULL")
    if query.use_case_ids:
        clauses.append(f"use_case_id IN ({', '.join(mark for _ in query.use_case_ids)})")
        params.extend(query.use_case_ids)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    direction = "DESC" if query.descending else "ASC"
    order = f" ORDER BY {SORT_COLUMNS[query.sort.value]} {direction}, created_at DESC, id DESC"
    return where, order, params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
