"""A dataset's files come back from the store byte for byte, on both stores, whatever
their size (SQLite writes a large one into its row a slice at a time)."""

from __future__ import annotations

import random
from uuid import uuid4

from genai_jobs.store import Store
from genai_jobs.vectors.records import Document, DocumentKind, NewDataset
from genai_jobs.vectors.store import vector_store_for
from genai_jobs.vectors.store.sqlite import LARGE_FILE_BYTES


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
