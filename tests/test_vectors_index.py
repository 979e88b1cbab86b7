"""Search indexes in process: exact top-k, the cache's memory bound and single loads, and
the faiss HNSW graph (extra `ann`, which the test install includes) against exact answers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from genai_jobs.vectors.index import (
    IndexCache,
    Loader,
    Matrix,
    VectorIndex,
    exact_search,
    faiss_available,
)

DIM = 384


def unit_rows(rows: int, seed: int, clusters: int = 50) -> Matrix:
    """Normalised vectors in clusters, like embeddings of documents on a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    matrix = centres[rng.integers(0, clusters, rows)] + \
        0.6 * rng.standard_normal((rows, DIM)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32)


def test_exact_search_answers_the_k_best_scores_best_first() -> None:
    matrix = unit_rows(500, seed=1)
    query = matrix[42]
    found = exact_search(matrix, query, 5)
    scores = matrix @ query
    assert [row for row, _ in found] == list(np.argsort(-scores)[:5])
    assert found[0][0] == 42
    assert found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [score for _, score in found] == sorted((score for _, score in found), reverse=True)
    assert len(exact_search(matrix[:3], query, 10)) == 3
    assert exact_search(matrix[:0], query, 10) == []


async def test_the_cache_loads_a_key_once_and_drops_the_least_recent_past_its_bound() -> None:
    one = unit_rows(100, seed=2)  # 153,600 bytes each
    loads: list[str] = []

    def loader(key: str) -> Loader:
        async def load() -> Matrix:
            loads.append(key)
            await asyncio.sleep(0.01)  # concurrent searches arrive while it loads
            return one

        return load

    cache = IndexCache(max_bytes=2 * one.nbytes)
    first = await asyncio.gather(*(cache.get("a", loader("a")) for _ in range(5)))
    assert loads == ["a"]
    assert all(index is first[0] for index in first)
    await cache.get("b", loader("b"))
    await cache.get("a", loader("a"))  # now the most recent
    await cache.get("c", loader("c"))  # b is dropped
    assert cache.size_bytes == 2 * one.nbytes
    await cache.get("a", loader("a"))
    await cache.get("b", loader("b"))
    assert loads == ["a", "b", "c", "b"]


@pytest.mark.skipif(not faiss_available(), reason="needs the ann extra (faiss-cpu)")
def test_the_hnsw_graph_finds_nearly_all_of_the_exact_top_ten() -> None:
    matrix = unit_rows(5000, seed=3)
    rng = np.random.default_rng(4)
    queries = matrix[rng.integers(0, len(matrix), 100)] + \
        0.3 * rng.standard_normal((100, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = VectorIndex(matrix)
    truth = [{row for row, _ in index.search(query, 10)} for query in queries]
    index.build_hnsw()
    assert index.approximate
    found = [index.search(query, 10) for query in queries]
    recall = np.mean([len({row for row, _ in got} & want) / 10
                      for got, want in zip(found, truth, strict=True)])
    assert recall >= 0.95
    for got in found:
        scores = [score for _, score in got]
        assert scores == sorted(scores, reverse=True)
        assert len(got) == 10


@pytest.mark.skipif(not faiss_available(), reason="needs the ann extra (faiss-cpu)")
async def test_the_cache_builds_graphs_in_the_background_only_for_large_databases() -> None:
    small, large = unit_rows(200, seed=5), unit_rows(3000, seed=6)

    def load(matrix: Matrix) -> Loader:
        async def loaded() -> Matrix:
            return matrix

        return loaded

    cache = IndexCache(max_bytes=10**9, use_hnsw=True, hnsw_min_rows=1000)
    small_index = await cache.get("small", load(small))
    large_index = await cache.get("large", load(large))
    assert not large_index.approximate  # exact answers while the graph is built
    for _ in range(600):  # up to 60 s
        if large_index.approximate:
            break
        await asyncio.sleep(0.1)
    assert large_index.approximate
    assert not small_index.approximate
    assert large_index.search(large[7], 1)[0][0] == 7
