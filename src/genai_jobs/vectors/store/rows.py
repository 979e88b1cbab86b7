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
    DocumentRecord,
    Family,
    MetadataColumn,
    MetadataType,
    NewChunk,
    SkippedDocument,
    UpdateMode,
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
                        row["size_bytes"], decode.json(row["metadata"]), row["digest"])


def document_record(row: Row) -> DocumentRecord:
    return DocumentRecord(row["ordinal"], row["name"], DocumentKind(row["kind"]),
                          row["digest"], row["first_seq"], row["chunk_count"])


def family(row: Row, decode: Decoder) -> Family:
    return Family(decode.uuid(row["family_id"]), row["tenant"],
                  decode.maybe_uuid(row["active_id"]))


# What `chunk` reads (not PostgreSQL's tsvector, which only the database reads).
CHUNK_COLUMNS = "seq, document, position, page, start_char, end_char, text, metadata, kind"


def chunk(row: Row, decode: Decoder) -> Chunk:
    kind = row["kind"]
    return Chunk(row["seq"], row["document"], row["position"], row["page"], row["start_char"],
                 row["end_char"], row["text"], decode.json(row["metadata"]),
                 None if kind is None else DocumentKind(kind))


def chunk_values(vdb_id: Any, first_seq: int, chunks: Sequence[NewChunk],
                 metadata: Callable[[dict[str, Any]], Any]) -> list[tuple[Any, ...]]:
    """INSERT_CHUNK's parameters for `chunks` numbered from `first_seq`."""
    return [(vdb_id, first_seq + offset, chunk.document, chunk.position, chunk.page,
             chunk.start_char, chunk.end_char, chunk.text, metadata(dict(chunk.metadata)),
             chunk.content_key, None if chunk.kind is None else chunk.kind.value)
            for offset, chunk in enumerate(chunks)]


def insert_chunk_sql(mark: str) -> str:
    return ("INSERT INTO vector_chunks (vdb_id, seq, document, position, page, start_char,"
            " end_char, text, metadata, content_key, kind) VALUES ("
            + ", ".join([mark] * 11) + ")")


def document_values(vdb_id: Any, records: Sequence[DocumentRecord]) -> list[tuple[Any, ...]]:
    return [(vdb_id, record.ordinal, record.name, record.kind.value, record.digest,
             record.first_seq, record.chunk_count) for record in records]


def insert_document_sql(mark: str) -> str:
    return ("INSERT INTO vector_documents (vdb_id, ordinal, name, kind, digest, first_seq,"
            " chunk_count) VALUES (" + ", ".join([mark] * 7) + ")")


def legacy_records(rows: Sequence[Row]) -> list[DocumentRecord]:
    """Records for a version built before they were kept, from its chunks' documents
    (rows of document, first_seq, chunk_count in seq order): with no digest, an update
    counts each as changed, though its vectors are still reused by content."""
    return [DocumentRecord(ordinal, row["document"], DocumentKind.TEXT, "",
                           row["first_seq"], row["chunk_count"])
            for ordinal, row in enumerate(rows)]


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
                                for item in decode.json(row["skipped_documents"])),
        update_mode=UpdateMode(row["update_mode"]), changes=decode.json(row["changes"]))


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


def rows_of_batch(first_seq: int, count: int, vectors: bytes,
                  wanted: Sequence[int]) -> dict[int, bytes]:
    """The vectors of the `wanted` seqs that fall in one batch, by seq."""
    width = len(vectors) // count
    view = memoryview(vectors)
    return {seq: bytes(view[(seq - first_seq) * width:(seq - first_seq + 1) * width])
            for seq in wanted if first_seq <= seq < first_seq + count}


# Seqs further apart than this are read as separate spans of batches.
SPAN_GAP = 4096


def seq_spans(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """(lowest, highest) of runs of the sorted seqs with no gap wider than SPAN_GAP: the
    batches to read for them, without reading every batch between far-apart ones."""
    spans: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if spans and seq - spans[-1][1] <= SPAN_GAP:
            spans[-1] = (spans[-1][0], seq)
        else:
            spans.append((seq, seq))
    return spans
