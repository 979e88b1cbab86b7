"""A vector database's chunks and vectors as one Parquet file, streamed (textAndEmbeddings).

`parquet_stream` turns batches of chunks and their float32 vectors into the bytes of a
Parquet file, one row group per batch, handing out what pyarrow has written after each
batch: memory holds one batch and its row group, never the whole file (the footer, a
few hundred bytes a row group, comes last). `export_file_name` names the download.

Columns, in order: text, embedding (fixed_size_list<float32>[dimensions]),
document_file_path, chunk_index (int32), page (int32, null outside PDFs), start_char,
end_char (int64), then one string column per requested metadata key.

Needs the `embeddings` extra (numpy, pyarrow); the HTTP route imports it when called.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np

# pyarrow ships neither stubs nor a py.typed marker: it is used through Any here.
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from genai_jobs.vectors.records import Chunk

_FIXED_COLUMNS = ("text", "embedding", "document_file_path", "chunk_index", "page",
                 "start_char", "end_char")
# Short, repeated strings are dictionary encoded; the texts and floats are not. Statistics
# go in the footer, once per row group: only where they are small and of use to readers.
_DICTIONARY_COLUMNS = ("document_file_path",)
_STATISTICS_COLUMNS = ("document_file_path", "chunk_index", "page", "start_char", "end_char")
_FILE_STEM_MAX = 100


@dataclass(frozen=True, slots=True)
class ExportBatch:
    """Consecutive chunks with their vectors and their documents' metadata."""

    chunks: Sequence[Chunk]  # in seq order
    vectors: bytes  # float32 little endian, row major: len(chunks) * dimensions * 4 bytes
    metadata: Sequence[Mapping[str, object]]  # one per chunk: its document's metadata


class _Sink:
    """A write-only file for pyarrow that keeps what it is given until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        """Everything written since the last take."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def parquet_stream(batches: AsyncIterator[ExportBatch], dimensions: int,
                         metadata_columns: Sequence[str] = ()) -> AsyncIterator[bytes]:
    """The Parquet file's bytes, a row group per batch, as they are written.

    Batches without chunks add no row group. ValueError (raised when the stream is
    first read) for a bad `dimensions` or metadata column name, and (when that batch
    is reached) for a batch whose vectors or metadata do not match its chunks.
    `batches` is closed (if it has `aclose`) when the stream ends, however it ends.
    """
    try:
        schema = _schema(dimensions, metadata_columns)
        sink = _Sink()
        with pq.ParquetWriter(sink, schema, use_dictionary=list(_DICTIONARY_COLUMNS),
                              write_statistics=list(_STATISTICS_COLUMNS)) as writer:
            async for batch in batches:
                table = _table(batch, schema, dimensions, metadata_columns)
                if table.num_rows:
                    writer.write_table(table, row_group_size=table.num_rows)
                piece = sink.take()
                if piece:
                    yield piece
        yield sink.take()  # the footer (and, with no batches, the whole file)
    finally:
        close = getattr(batches, "aclose", None)
        if close is not None:
            await close()


def _schema(dimensions: int, metadata_columns: Sequence[str] = ()) -> Any:
    """The file's pyarrow schema; ValueError for a bad `dimensions` or column name."""
    if dimensions < 1:
        raise ValueError(f"dimensions must be positive, not {dimensions}")
    names = list(_FIXED_COLUMNS) + list(metadata_columns)
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"metadata columns repeat or shadow columns: {', '.join(duplicated)}")
    fields = [
        pa.field("text", pa.string()),
        pa.field("embedding", pa.list_(pa.float32(), dimensions)),
        pa.field("document_file_path", pa.string()),
        pa.field("chunk_index", pa.int32()),
        pa.field("page", pa.int32()),
        pa.field("start_char", pa.int64()),
        pa.field("end_char", pa.int64()),
    ]
    fields += [pa.field(name, pa.string()) for name in metadata_columns]
    return pa.schema(fields)


def _table(batch: ExportBatch, schema: Any, dimensions: int,
           metadata_columns: Sequence[str]) -> Any:
    chunks = batch.chunks
    expected = len(chunks) * dimensions * 4
    if len(batch.vectors) != expected:
        raise ValueError(f"{len(chunks)} chunks of dimension {dimensions} need {expected} "
                         f"bytes of vectors, not {len(batch.vectors)}")
    if len(batch.metadata) != len(chunks):
        raise ValueError(f"{len(chunks)} chunks but {len(batch.metadata)} metadata mappings")
    # Read in place as little endian, then native order (a copy only on big-endian hosts).
    floats = np.frombuffer(batch.vectors, dtype="<f4").astype(np.float32, copy=False)
    arrays = [
        pa.array([chunk.text for chunk in chunks], type=pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(floats, type=pa.float32()), dimensions),
        pa.array([chunk.document for chunk in chunks], type=pa.string()),
        pa.array([chunk.position for chunk in chunks], type=pa.int32()),
        pa.array([chunk.page for chunk in chunks], type=pa.int32()),
        pa.array([chunk.start_char for chunk in chunks], type=pa.int64()),
        pa.array([chunk.end_char for chunk in chunks], type=pa.int64()),
    ]
    arrays += [pa.array([_metadata_value(meta.get(name)) for meta in batch.metadata],
                        type=pa.string())
               for name in metadata_columns]
    return pa.Table.from_arrays(arrays, schema=schema)


def _metadata_value(value: object) -> str | None:
    """A metadata value as a string: null when absent, booleans as true/false."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def export_file_name(name: str, vdb_id: UUID) -> str:
    """A safe file name for Content-Disposition (letters, digits, - _ . only), ending .parquet.

    The vector database's name, in ASCII (accents dropped, anything else an underscore,
    no leading dots, at most 100 characters), then its id: "Résumé docs" becomes
    "Resume_docs-<id>.parquet". DataRobot's SDK saves the download under this name.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name)
    stem = re.sub(r"\.{2,}", ".", stem)
    stem = re.sub(r"\.parquet$", "", stem, flags=re.IGNORECASE)
    stem = stem[:_FILE_STEM_MAX].strip("._-")
    return f"{stem}-{vdb_id}.parquet" if stem else f"vector_database-{vdb_id}.parquet"
