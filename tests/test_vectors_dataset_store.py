"""A dataset's files come back from the store byte for byte, on both stores, whatever
their size and wherever they come from (SQLite keeps a large one a slice per row)."""

from __future__ import annotations

import random
import sqlite3
from uuid import uuid4

from genai_jobs.store import Store
from genai_jobs.store.sqlite.store import SQLiteStore
from genai_jobs.vectors.records import Document, DocumentKind, NewDataset
from genai_jobs.vectors.store import vector_store_for
from genai_jobs.vectors.store.sqlite import LARGE_FILE_BYTES
from tests.vectors_support import spooled


async def test_small_and_large_files_come_back_whole_and_in_order(store: Store) -> None:
    generator = random.Random(7)
    sizes = [1, LARGE_FILE_BYTES, LARGE_FILE_BYTES + 1, 3 * LARGE_FILE_BYTES + 12_345, 100]
    contents = [generator.randbytes(size) for size in sizes]
    documents = [Document(f"file-{index}.txt", DocumentKind.TEXT, content,
                          {"index": str(index)})
                 for index, content in enumerate(contents)]
    vectors = vector_store_for(store)
    dataset = await vectors.create_dataset(NewDataset(
        id=uuid4(), tenant="acme", name="mixed sizes", created_by="acme", documents=documents))
    assert dataset.document_count == len(sizes)
    assert dataset.total_bytes == sum(sizes)
    listed = await vectors.documents(dataset.id)
    assert [(info.position, info.name, info.size_bytes, dict(info.metadata))
            for info in listed] == [
        (index, f"file-{index}.txt", size, {"index": str(index)})
        for index, size in enumerate(sizes)]
    for index, content in enumerate(contents):
        assert await vectors.read_document(dataset.id, index) == content


async def test_files_read_from_their_upload_s_temporary_file_are_stored_whole(
        store: Store) -> None:
    """A large upload reaches the store still in its temporary file (vectors/spooled.py);
    SQLite keeps it a slice per row, PostgreSQL in one value."""
    generator = random.Random(11)
    sizes = [LARGE_FILE_BYTES + 1, 2 * LARGE_FILE_BYTES, 5 * LARGE_FILE_BYTES + 3, 10]
    contents = [generator.randbytes(size) for size in sizes]
    documents = [Document(f"spooled-{index}.txt", DocumentKind.TEXT, spooled(content))
                 for index, content in enumerate(contents)]
    vectors = vector_store_for(store)
    dataset = await vectors.create_dataset(NewDataset(
        id=uuid4(), tenant="acme", name="spooled", created_by="acme", documents=documents))
    assert dataset.total_bytes == sum(sizes)
    assert [info.size_bytes for info in await vectors.documents(dataset.id)] == sizes
    for index, content in enumerate(contents):
        assert await vectors.read_document(dataset.id, index) == content
    if isinstance(store, SQLiteStore):  # no value of the size of a large file
        with sqlite3.connect(store.path) as conn:
            largest = conn.execute("SELECT MAX(length(content)) FROM dataset_files"
                                   " WHERE dataset_id = ?", (str(dataset.id),)).fetchone()[0]
            parts = conn.execute("SELECT COUNT(*), MAX(length(content)) FROM dataset_file_parts"
                                 " WHERE dataset_id = ?", (str(dataset.id),)).fetchone()
        conn.close()
        assert largest == 10
        assert parts == (2 + 2 + 6, LARGE_FILE_BYTES)
    await vectors.delete_dataset(dataset.id, None)
    if isinstance(store, SQLiteStore):  # its parts go with it
        with sqlite3.connect(store.path) as conn:
            left = conn.execute("SELECT COUNT(*) FROM dataset_file_parts WHERE dataset_id = ?",
                                (str(dataset.id),)).fetchone()[0]
        conn.close()
        assert left == 0
