"""Searching vectors: exact (numpy) by default, an HNSW graph (faiss, extra `ann`) on request.

The vectors of a vector database are read from the store once and kept, as one
float32 matrix, in an in-process cache bounded in bytes (least recently used
out first). Vectors are unit length, so the inner product is the cosine.
An HNSW graph, when asked for, is built in a thread in the background; exact
search answers until it is ready.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

from genai_jobs.vectors.fields import Fields, Mask

log = logging.getLogger("genai_jobs.vectors")

Matrix = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float32]
# HNSW parameters: neighbours per node, and the breadth of the build and of a search.
# The graph holds 8-bit scalar-quantised vectors (a quarter of the memory, cheaper
# distances); its best HNSW_CANDIDATES are then re-ranked with the exact vectors.
# Measured in bench/vectors.py at 100,000 clustered vectors: recall@10 0.96 at
# ~1.5 ms a query, where the same graph of float vectors took ~2.4 ms for 0.96.
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 512
HNSW_CANDIDATES = 40
# A filtered search scores only the matching rows when they are at most this share of
# all (gathering them costs less than scoring the rest), and searches a graph only
# when more match: then it asks the graph for enough candidates that the matches
# among them are the best ones, and falls back to the exact search when too few are.
FILTERED_SUBSET_SHARE = 0.25
HNSW_FILTERED_MIN_SHARE = 0.2


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


class VectorIndex:
    """One vector database's vectors, searchable."""

    def __init__(self, matrix: Matrix) -> None:
        self.matrix = matrix
        self._hnsw: Any = None
        # The chunks' filterable fields, read from the store on the first filtered search.
        self.fields: Fields | None = None
        self.fields_lock = asyncio.Lock()

    @property
    def size_bytes(self) -> int:
        return int(self.matrix.nbytes) + (self.fields.size_bytes if self.fields else 0)

    @property
    def approximate(self) -> bool:
        return self._hnsw is not None

    def search(self, query: Vector, k: int, mask: Mask | None = None) -> list[tuple[int, float]]:
        """The `k` rows nearest `query` (among the rows `mask` keeps), best first, as
        (row, score)."""
        if mask is not None:
            return self._search_masked(query, k, mask)
        if self._hnsw is not None:
            return self._search_hnsw(query, k)
        return exact_search(self.matrix, query, k)

    def _search_masked(self, query: Vector, k: int, mask: Mask) -> list[tuple[int, float]]:
        matches = int(mask.sum())
        if matches == 0:
            return []
        share = matches / len(mask)
        if self._hnsw is not None and share >= HNSW_FILTERED_MIN_SHARE:
            wanted = min(len(mask), int(max(k, HNSW_CANDIDATES) / share * 2) + k)
            found = [(row, score) for row, score in self._search_hnsw(query, wanted)
                     if mask[row]]
            if len(found) >= min(k, matches):
                return found[:k]
        if share <= FILTERED_SUBSET_SHARE:
            rows = np.flatnonzero(mask)
            return [(int(rows[row]), score)
                    for row, score in exact_search(self.matrix[rows], query, k)]
        scores = self.matrix @ query
        scores[~mask] = -np.inf
        return [(row, score) for row, score in _top(scores, min(k, matches))]

    def build_hnsw(self) -> None:
        """Build the HNSW graph (seconds to minutes: run it in a thread)."""
        import faiss

        # faiss's stubs type the quantiser argument as a ScalarQuantizer; at run time
        # it is the QT_* constant, as faiss's own examples pass it.
        graph = faiss.IndexHNSWSQ(self.matrix.shape[1],
                                  faiss.ScalarQuantizer.QT_8bit,  # type: ignore[arg-type]
                                  HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        graph.train(self.matrix)
        graph.add(self.matrix)
        graph.hnsw.efSearch = HNSW_EF_SEARCH
        self._hnsw = graph

    def _search_hnsw(self, query: Vector, k: int) -> list[tuple[int, float]]:
        wanted = min(max(k, HNSW_CANDIDATES), len(self.matrix))
        _, found = self._hnsw.search(query.reshape(1, -1), wanted)
        candidates = found[0][found[0] >= 0]
        exact = self.matrix[candidates] @ query  # scores as exact search gives them
        best = np.argsort(-exact, kind="stable")[:k]
        return [(int(candidates[i]), float(exact[i])) for i in best]


def exact_search(matrix: Matrix, query: Vector, k: int) -> list[tuple[int, float]]:
    if len(matrix) == 0:
        return []
    # One pass over the matrix: at 100,000 x 384 it reads 154 MB, so memory bandwidth,
    # not arithmetic, sets the time; nothing else here copies it.
    return _top(matrix @ query, min(k, len(matrix)))


def _top(scores: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
    best = np.argpartition(scores, len(scores) - k)[len(scores) - k:]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(row), float(scores[row])) for row in best]


Loader = Callable[[], Awaitable[Matrix]]


class IndexCache:
    """Indexes by key, at most `max_bytes` of vectors in all; one load per key at a time."""

    def __init__(self, max_bytes: int, use_hnsw: bool = False, hnsw_min_rows: int = 0) -> None:
        self.max_bytes = max_bytes
        self.use_hnsw = use_hnsw and faiss_available()
        self.hnsw_min_rows = hnsw_min_rows
        self._indexes: collections.OrderedDict[Hashable, VectorIndex] = collections.OrderedDict()
        self._loading: dict[Hashable, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def size_bytes(self) -> int:
        return sum(index.size_bytes for index in self._indexes.values())

    async def get(self, key: Hashable, load: Loader) -> VectorIndex:
        index = self._hit(key)
        if index is not None:
            return index
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent searches of a cold database load it once
            index = self._hit(key)
            if index is None:
                index = VectorIndex(await load())
                self._keep(key, index)
        self._loading.pop(key, None)
        return index

    def evict(self, match: Callable[[Hashable], bool]) -> None:
        for key in [key for key in self._indexes if match(key)]:
            del self._indexes[key]

    def _hit(self, key: Hashable) -> VectorIndex | None:
        index = self._indexes.get(key)
        if index is not None:
            self._indexes.move_to_end(key)
        return index

    def _keep(self, key: Hashable, index: VectorIndex) -> None:
        if index.size_bytes > self.max_bytes:
            return  # served this once, but too large to keep
        while self._indexes and self.size_bytes + index.size_bytes > self.max_bytes:
            self._indexes.popitem(last=False)
        self._indexes[key] = index
        if self.use_hnsw and len(index.matrix) >= self.hnsw_min_rows:
            task = asyncio.create_task(self._build_hnsw(key, index))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _build_hnsw(self, key: Hashable, index: VectorIndex) -> None:
        try:
            await asyncio.to_thread(index.build_hnsw)
        except Exception:  # exact search goes on answering
            log.exception("building the HNSW index of %s failed", key)
