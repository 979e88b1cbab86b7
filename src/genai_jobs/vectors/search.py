"""A query against a built vector database: embed it, find the nearest chunks, read them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from uuid import UUID

from genai_jobs.vectors.embeddings import get_embedder
from genai_jobs.vectors.filters import Filter
from genai_jobs.vectors.index import IndexCache, Matrix, VectorIndex
from genai_jobs.vectors.records import Hit, VectorDatabase
from genai_jobs.vectors.settings import VectorSettings
from genai_jobs.vectors.store import VectorStore

if TYPE_CHECKING:
    from genai_jobs.vectors.fields import Fields


class Searcher:
    def __init__(self, vectors: VectorStore, settings: VectorSettings) -> None:
        self.vectors = vectors
        self.cache = IndexCache(settings.vector_cache_bytes,
                                use_hnsw=settings.vector_search_index == "hnsw",
                                hnsw_min_rows=settings.vector_ann_min_chunks)

    async def search(self, vdb: VectorDatabase, query: str, k: int,
                     where: Filter | None = None) -> list[Hit]:
        """The `k` chunks nearest `query`, among those `where` matches (FilterRejected
        if it names a field the version lacks, or compares one with another type)."""
        embedder = await asyncio.to_thread(get_embedder, vdb.embedding_model)
        vectors = await asyncio.to_thread(embedder.embed, [query])
        # Keyed by when it was built: a database built again is never answered from old vectors.
        index = await self.cache.get((vdb.id, vdb.built_at), lambda: self._load(vdb))
        mask = None
        if where is not None:
            fields = await self._fields(vdb, index)
            mask = await asyncio.to_thread(fields.mask, where)
        best = await asyncio.to_thread(index.search, vectors[0], k, mask)
        chunks = {chunk.seq: chunk for chunk in
                  await self.vectors.chunks(vdb.id, [row for row, _ in best])}
        return [Hit(chunks[row], score) for row, score in best if row in chunks]

    async def _fields(self, vdb: VectorDatabase, index: VectorIndex) -> Fields:
        """The version's filterable fields, read once and kept with its vectors."""
        from genai_jobs.vectors.fields import Fields

        async with index.fields_lock:
            if index.fields is None:
                rows = await self.vectors.chunk_fields(vdb.id)
                index.fields = await asyncio.to_thread(Fields, rows)
        return index.fields

    def forget(self, vdb_id: UUID) -> None:
        self.cache.evict(lambda key: isinstance(key, tuple) and key[0] == vdb_id)

    async def _load(self, vdb: VectorDatabase) -> Matrix:
        return await load_matrix(self.vectors, vdb)


async def load_matrix(vectors: VectorStore, vdb: VectorDatabase) -> Matrix:
    """The database's vectors as one matrix, filled batch by batch (never two copies)."""
    import numpy as np

    matrix = np.empty((vdb.chunk_count, vdb.dimensions), dtype=np.float32)
    filled = 0
    async for first_seq, count, data in vectors.vector_batches(vdb.id):
        block = np.frombuffer(data, dtype="<f4").reshape(count, vdb.dimensions)
        matrix[first_seq:first_seq + count] = block
        filled += count
    if filled != vdb.chunk_count:
        raise RuntimeError(f"vector database {vdb.id} has {filled} vectors stored for "
                           f"{vdb.chunk_count} chunks")
    return matrix
