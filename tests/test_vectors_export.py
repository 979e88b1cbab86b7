"""The Parquet export of chunks and vectors (textAndEmbeddings), read back with pyarrow."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from uuid import UUID

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from genai_jobs.vectors.export import ExportBatch, export_file_name, parquet_stream
from genai_jobs.vectors.records import Chunk

DIM = 8
COLUMNS = ["text", "embedding", "document_file_path", "chunk_index", "page", "start_char",
           "end_char"]


def make_batch(first_seq: int, count: int, dimensions: int, seed: int,
               metadata: Sequence[Mapping[str, object]] | None = None) -> ExportBatch:
    """`count` chunks from seq `first_seq`, two to a document, odd documents paged (PDFs)."""
    chunks = []
    for seq in range(first_seq, first_seq + count):
        document = seq // 2
        chunks.append(Chunk(seq=seq, document=f"docs/file-{document}.txt", position=seq % 2,
                            page=seq % 2 + 1 if document % 2 else None,
                            start_char=(seq % 2) * 1000, end_char=(seq % 2) * 1000 + 999,
                            text=f"chunk {seq}: " + "lorem ipsum " * (seq % 5)))
    vectors = np.random.default_rng(seed).standard_normal((count, dimensions), dtype=np.float32)
    return ExportBatch(chunks=chunks, vectors=vectors.astype("<f4").tobytes(),
                       metadata=metadata if metadata is not None else [{}] * count)


async def source(batches: Sequence[ExportBatch]) -> AsyncIterator[ExportBatch]:
    for batch in batches:
        yield batch


async def pieces_of(batches: Sequence[ExportBatch], dimensions: int,
                    metadata_columns: Sequence[str] = ()) -> list[bytes]:
    return [piece async for piece in parquet_stream(source(batches), dimensions,
                                                    metadata_columns)]


def read(data: bytes) -> pq.ParquetFile:
    return pq.ParquetFile(pa.BufferReader(data))


async def test_several_batches_come_back_as_written_a_row_group_each() -> None:
    metadata: list[Mapping[str, object]] = [
        {"author": "Ada", "reviewed": True, "year": 1843},
        {"author": "Grace", "reviewed": False},
        {"year": 2024.5},
        {},
    ]
    batches = [make_batch(0, 4, DIM, seed=1, metadata=metadata), make_batch(4, 3, DIM, seed=2),
               make_batch(7, 5, DIM, seed=3)]
    file = read(b"".join(await pieces_of(batches, DIM, ["author", "reviewed", "year"])))

    assert file.metadata.num_row_groups == 3
    assert [file.metadata.row_group(i).num_rows for i in range(3)] == [4, 3, 5]
    schema = file.schema_arrow
    assert schema.names == [*COLUMNS, "author", "reviewed", "year"]
    assert schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert schema.field("chunk_index").type == pa.int32()
    assert schema.field("page").type == pa.int32()
    assert schema.field("start_char").type == pa.int64()
    assert schema.field("reviewed").type == pa.string()

    table = file.read()
    chunks = [chunk for batch in batches for chunk in batch.chunks]
    assert table.column("text").to_pylist() == [chunk.text for chunk in chunks]
    assert table.column("document_file_path").to_pylist() == [chunk.document for chunk in chunks]
    assert table.column("chunk_index").to_pylist() == [chunk.position for chunk in chunks]
    assert table.column("page").to_pylist() == [chunk.page for chunk in chunks]
    assert None in table.column("page").to_pylist()
    assert table.column("start_char").to_pylist() == [chunk.start_char for chunk in chunks]
    assert table.column("end_char").to_pylist() == [chunk.end_char for chunk in chunks]

    embeddings = table.column("embedding").combine_chunks()
    read_back = embeddings.flatten().to_numpy().reshape(len(chunks), DIM)
    written = np.frombuffer(b"".join(batch.vectors for batch in batches), dtype="<f4")
    assert read_back.dtype == np.float32
    assert np.array_equal(read_back, written.reshape(len(chunks), DIM))

    assert table.column("author").to_pylist()[:5] == ["Ada", "Grace", None, None, None]
    assert table.column("reviewed").to_pylist()[:5] == ["true", "false", None, None, None]
    assert table.column("year").to_pylist()[:5] == ["1843", None, "2024.5", None, None]


async def test_no_batches_give_a_readable_file_with_the_schema_and_no_rows() -> None:
    pieces = await pieces_of([], 384, ["source"])
    file = read(b"".join(pieces))
    assert file.metadata.num_rows == 0
    assert file.schema_arrow.names == [*COLUMNS, "source"]
    assert file.schema_arrow.field("embedding").type == pa.list_(pa.float32(), 384)
    assert file.read().num_rows == 0


async def test_a_batch_without_chunks_adds_no_row_group() -> None:
    batches = [make_batch(0, 2, DIM, seed=1), make_batch(2, 0, DIM, seed=2),
               make_batch(2, 2, DIM, seed=3)]
    file = read(b"".join(await pieces_of(batches, DIM)))
    assert file.metadata.num_row_groups == 2
    assert file.read().column("chunk_index").to_pylist() == [0, 1, 0, 1]


@pytest.mark.parametrize("cut", [4, -4])
async def test_vectors_of_the_wrong_length_raise_value_error(cut: int) -> None:
    good = make_batch(0, 3, DIM, seed=1)
    vectors = good.vectors[:-cut] if cut > 0 else good.vectors + b"\0" * -cut
    bad = ExportBatch(chunks=good.chunks, vectors=vectors, metadata=good.metadata)
    with pytest.raises(ValueError, match="bytes of vectors"):
        await pieces_of([good, bad], DIM)


async def test_metadata_not_one_per_chunk_raises_value_error() -> None:
    good = make_batch(0, 3, DIM, seed=1)
    bad = ExportBatch(chunks=good.chunks, vectors=good.vectors, metadata=[{}, {}])
    with pytest.raises(ValueError, match="metadata"):
        await pieces_of([bad], DIM)


@pytest.mark.parametrize(("dimensions", "columns"), [(0, []), (DIM, ["text"]),
                                                     (DIM, ["a", "a"])])
async def test_bad_dimensions_or_metadata_columns_raise_value_error(
        dimensions: int, columns: list[str]) -> None:
    with pytest.raises(ValueError, match=r"dimensions|columns"):
        await pieces_of([make_batch(0, 1, DIM, seed=1)], dimensions, columns)


async def test_the_file_streams_in_pieces_no_bigger_than_about_a_batch() -> None:
    dimensions, batches, rows = 384, 50, 200
    batch_vectors = rows * dimensions * 4  # 307,200 bytes
    pieces = [piece async for piece in parquet_stream(
        (make_batch(n * rows, rows, dimensions, seed=n) async for n in _count(batches)),
        dimensions)]

    total = sum(len(piece) for piece in pieces)
    assert total > batches * batch_vectors
    assert len(pieces) > batches  # a piece a batch, then the footer
    assert max(len(piece) for piece in pieces) < 1.5 * batch_vectors
    assert max(len(piece) for piece in pieces) < total / 20
    file = read(b"".join(pieces))
    assert file.metadata.num_rows == batches * rows
    assert file.metadata.num_row_groups == batches


async def _count(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def test_the_source_is_closed_when_the_stream_is_closed_early() -> None:
    closed: list[bool] = []

    async def endless() -> AsyncIterator[ExportBatch]:
        try:
            seq = 0
            while True:
                yield make_batch(seq, 2, DIM, seed=seq)
                seq += 2
        finally:
            closed.append(True)

    stream = parquet_stream(endless(), DIM)
    assert await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed == [True]


VDB = UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(("name", "expected"), [
    ("Product manuals", f"Product_manuals-{VDB}.parquet"),
    ("../../etc/passwd", f"etc_passwd-{VDB}.parquet"),
    ("résumé docs", f"resume_docs-{VDB}.parquet"),
    ("export.PARQUET", f"export-{VDB}.parquet"),
    ('a"b;c=d\r\nSet-Cookie: x', f"a_b_c_d_Set-Cookie_x-{VDB}.parquet"),
    ("...", f"vector_database-{VDB}.parquet"),
    ("", f"vector_database-{VDB}.parquet"),
    ("日本語", f"vector_database-{VDB}.parquet"),
])
def test_export_file_name_is_safe_and_ends_in_parquet(name: str, expected: str) -> None:
    assert export_file_name(name, VDB) == expected


def test_export_file_names_stay_short() -> None:
    file_name = export_file_name("x" * 1000, VDB)
    assert re.fullmatch(r"[A-Za-z0-9._-]+\.parquet", file_name)
    assert len(file_name) < 160
