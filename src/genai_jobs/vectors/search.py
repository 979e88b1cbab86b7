"""A query against a built vector database: embed it and find the nearest chunks, or ask
the store's full-text engine, or both fused; filter them; read them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from uuid import UUID

from genai_jobs.vectors.embeddings import get_embedder
from genai_jobs.vectors.filters import Filter
from genai_jobs.vectors.index import IndexCache, Matrix, VectorIndex
from genai_jobs.vectors.keywords import fuse, keyword_weight
from genai_jobs.vectors.records import Hit, VectorDatabase
from genai_jobs.vectors.settings import VectorSettings
from genai_jobs.vectors.store import VectorStore

if TYPE_CHECKING:
    from genai_jobs.vectors.fields import Fields, Mask

# Each ranking's best this many are fused in hybrid mode.
FUSED_CANDIDATES = 50
# A filtered keyword search asks the store for at most this many chunks: a filter that
# keeps fewer than FUSED_CANDIDATES of them may then answer fewer than asked.
MAX_KEYWORD_CANDIDATES = 10_000


class Searcher:
    def __init__(self, vectors: VectorStore, settings: VectorSettings) -> None:
        self.vectors = vectors
        self.cache = IndexCache(settings.vector_cache_bytes,
                                use_hnsw=settings.vector_search_index == "hnsw",
                                hnsw_min_rows=settings.vector_ann_min_chunks)

    async def search(self, vdb: VectorDatabase, query: str, k: int,
                     where: Filter | None = None, mode: str = "dense",
                     keyword_share: float | None = None) -> list[Hit]:
        """The `k` chunks best for `query` by `mode` (dense: nearest by embedding;
        keyword: the store's full-text ranking; hybrid: the two fused by reciprocal
        rank, the keyword ranking weighed by `keyword_share`, by default as the query
        calls for: keywords.keyword_weight), among those `where` matches
        (FilterRejected if it names a field the version lacks, or compares one with
        another type)."""
        index = None
        mask = None
        if mode != "keyword" or where is not None:
            # Keyed by when it was built: a database built again is never answered from
            # old vectors (or old fields).
            index = await self.cache.get((vdb.id, vdb.built_at), lambda: self._load(vdb))
        if where is not None:
            assert index is not None
            fields = await self._fields(vdb, index)
            mask = await asyncio.to_thread(fields.mask, where)
        if mode == "keyword":
            best = await self._keyword(vdb, query, k, mask)
        else:
            assert index is not None
            embedder = await asyncio.to_thread(get_embedder, vdb.embedding_model)
            vectors = await asyncio.to_thread(embedder.embed, [query])
            weight = keyword_weight(query) if keyword_share is None else keyword_share
            wanted = max(k, FUSED_CANDIDATES) if mode == "hybrid" else k
            best = await asyncio.to_thread(index.search, vectors[0], wanted, mask)
            if mode == "hybrid":
                words = (await self._keyword(vdb, query, FUSED_CANDIDATES, mask)
                         if weight > 0 else [])
                best = fuse([[row for row, _ in best], [row for row, _ in words]], k,
                            [1.0, weight])
        chunks = {chunk.seq: chunk for chunk in
                  await self.vectors.chunks(vdb.id, [row for row, _ in best])}
        return [Hit(chunks[row], score) for row, score in best if row in chunks]

    async def _keyword(self, vdb: VectorDatabase, query: str, k: int,
                       mask: Mask | None) -> list[tuple[int, float]]:
        """The store's keyword ranking, cut to the `k` best among the chunks `mask`
        keeps (asking for as many more as the filter is selective)."""
        if mask is None:
            return await self.vectors.keyword_search(vdb.id, query, k)
        share = max(float(mask.mean()), 1e-9)
        limit = min(MAX_KEYWORD_CANDIDATES, int(k / share) + k)
        found = await self.vectors.keyword_search(vdb.id, query, limit)
        return [(row, score) for row, score in found if mask[row]][:k]

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
