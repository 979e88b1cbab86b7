"""Metadata filters: their form (refused with a path to the fault), their meaning checked
against a plain Python reading of every chunk, and filtered search, exact and through an
HNSW graph, against exact filtered search at low and high selectivity."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from genai_jobs.vectors.fields import Fields
from genai_jobs.vectors.filters import FilterRejected, parse_filter
from genai_jobs.vectors.index import VectorIndex, exact_search, faiss_available
from tests.test_vectors_index import unit_rows

TEAMS = ["security", "operations", "sales", "legal"]
TYPES = ["text", "markdown", "html", "pdf"]


Row = tuple[str, str | None, int | None, dict[str, Any]]


def chunk_rows(count: int, seed: int) -> list[Row]:
    """Chunks with metadata like a CSV's: some values missing, dates as ISO text."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for n in range(count):
        kind = TYPES[n % 4]
        metadata: dict[str, Any] = {"team": rng.choice(TEAMS), "priority": rng.randint(1, 5),
                                    "public": rng.random() < 0.5,
                                    "reviewed": f"2026-{rng.randint(1, 12):02d}-"
                                                f"{rng.randint(1, 28):02d}"}
        if n % 7 == 0:
            del metadata["priority"]  # an empty cell
        if n % 11 == 0:
            metadata["score"] = rng.random()
        rows.append((f"doc{n % 50}.{kind}", kind, rng.randint(1, 9) if kind == "pdf" else None,
                     metadata))
    return rows


def value_of(row: tuple[str, str | None, int | None, dict[str, Any]], field: str) -> Any:
    built_in = {"$documentName": row[0], "$documentType": row[1], "$page": row[2]}
    return built_in[field] if field in built_in else row[3].get(field)


def matches(row: tuple[str, str | None, int | None, dict[str, Any]], where: dict[str, Any]
            ) -> bool:
    """The reference: a filter read literally, one chunk at a time."""
    for key, condition in where.items():
        if key == "$and":
            if not all(matches(row, part) for part in condition):
                return False
            continue
        if key == "$or":
            if not any(matches(row, part) for part in condition):
                return False
            continue
        value = value_of(row, key)
        operators = condition if isinstance(condition, dict) else {"$eq": condition}
        for operator, wanted in operators.items():
            if not _holds(value, operator, wanted):
                return False
    return True


def _holds(value: Any, operator: str, wanted: Any) -> bool:
    if operator == "$eq":
        return (value is not None and value == wanted and type(value) is type(wanted)) or (
            isinstance(value, int | float) and not isinstance(value, bool)
            and not isinstance(wanted, bool) and value == wanted)
    if operator == "$ne":
        return not _holds(value, "$eq", wanted)
    if operator == "$in":
        return any(_holds(value, "$eq", item) for item in wanted)
    if operator == "$nin":
        return not _holds(value, "$in", wanted)
    if value is None:
        return False
    return bool({"$gt": value > wanted, "$gte": value >= wanted, "$lt": value < wanted,
                 "$lte": value <= wanted}[operator])


FILTERS: list[dict[str, Any]] = [
    {"team": "security"},
    {"team": {"$ne": "security"}},
    {"priority": {"$in": [1, 2]}},
    {"priority": {"$nin": [1, 2]}},
    {"priority": {"$gte": 2, "$lt": 4}},
    {"priority": 3.0},
    {"public": True},
    {"public": {"$in": [False]}},
    {"reviewed": {"$gte": "2026-03-01", "$lte": "2026-06-30"}},
    {"reviewed": {"$gt": "2026-11"}},
    {"reviewed": {"$lt": "2026-02-15"}},
    {"team": {"$in": ["sales", "legal", "nobody"]}, "public": False},
    {"$or": [{"team": "legal"}, {"priority": {"$lte": 1}}]},
    {"$and": [{"$or": [{"team": "sales"}, {"$page": {"$gte": 5}}]}, {"public": True}]},
    {"$documentType": "pdf", "$page": {"$lte": 2}},
    {"$documentName": {"$in": ["doc3.pdf", "doc7.pdf"]}},
    {"$documentName": {"$gte": "doc4", "$lt": "doc5"}},
    {"score": {"$gt": 0.5}},
    {"score": {"$ne": 0.5}},
    {"team": "nobody"},
]


@pytest.mark.parametrize("where", FILTERS, ids=[str(where) for where in FILTERS])
def test_a_filter_keeps_exactly_the_chunks_it_describes(where: dict[str, Any]) -> None:
    rows = chunk_rows(3000, seed=5)
    mask = Fields(rows).mask(parse_filter(where))
    assert mask.tolist() == [matches(row, where) for row in rows]


@pytest.mark.parametrize(("where", "path", "words"), [
    ({}, [], "non-empty object"),
    ([], [], "non-empty object"),
    ({"team": {"$like": "sec%"}}, ["team", "$like"], "unknown operator $like"),
    ({"$not": {"team": "x"}}, ["$not"], "unknown operator or field $not"),
    ({"$or": []}, ["$or"], "non-empty list"),
    ({"$or": [{"team": "x"}, 3]}, ["$or", 1], "non-empty object"),
    ({"priority": {"$in": 3}}, ["priority", "$in"], "list of 1 to 1000"),
    ({"priority": {"$in": [1, None]}}, ["priority", "$in", 1], "text, a number or a boolean"),
    ({"public": {"$gt": True}}, ["public", "$gt"], "not booleans"),
    ({"team": {"a": 1}}, ["team", "a"], "unknown operator a"),
])
def test_a_malformed_filter_is_refused_saying_where(where: Any, path: list[Any],
                                                    words: str) -> None:
    with pytest.raises(FilterRejected) as refused:
        parse_filter(where)
    assert list(refused.value.path) == path
    assert words in str(refused.value)


@pytest.mark.parametrize(("where", "words"), [
    ({"colour": "red"}, "no field 'colour'"),
    ({"priority": "high"}, "priority holds number values, not text"),
    ({"team": 3}, "team holds text values, not a number"),
    ({"public": "yes"}, "public holds boolean values, not text"),
    ({"public": {"$gte": 1}}, "public holds boolean values, not a number"),
])
def test_a_filter_that_does_not_fit_the_chunks_is_refused(where: dict[str, Any],
                                                          words: str) -> None:
    with pytest.raises(FilterRejected) as refused:
        Fields(chunk_rows(50, seed=1)).mask(parse_filter(where))
    assert words in str(refused.value)


def recall(found: list[tuple[int, float]], expected: list[tuple[int, float]]) -> float:
    return len({row for row, _ in found} & {row for row, _ in expected}) / len(expected)


def exact_filtered(matrix: Any, query: Any, mask: Any, k: int) -> list[tuple[int, float]]:
    rows = np.flatnonzero(mask)
    return [(int(rows[row]), score) for row, score in exact_search(matrix[rows], query, k)]


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5, 1.0])
def test_exact_filtered_search_is_the_best_of_the_matching_rows(share: float) -> None:
    matrix = unit_rows(20_000, seed=3)
    rng = np.random.default_rng(4)
    mask = rng.random(len(matrix)) < share
    index = VectorIndex(matrix)
    for query in matrix[rng.integers(0, len(matrix), 20)]:
        found = index.search(query, 10, mask)
        assert all(mask[row] for row, _ in found)
        assert found == exact_filtered(matrix, query, mask, 10)


def test_a_filter_matching_fewer_rows_than_k_answers_those_and_none_matches_none() -> None:
    matrix = unit_rows(1000, seed=3)
    mask = np.zeros(len(matrix), dtype=bool)
    assert VectorIndex(matrix).search(matrix[0], 10, mask) == []
    mask[[5, 600, 999]] = True
    assert {row for row, _ in VectorIndex(matrix).search(matrix[0], 10, mask)} == {5, 600, 999}


@pytest.mark.skipif(not faiss_available(), reason="needs the ann extra (faiss)")
@pytest.mark.parametrize("share", [0.01, 0.05, 0.3, 0.8])
def test_filtered_search_through_the_graph_keeps_recall_at_any_selectivity(
        share: float) -> None:
    matrix = unit_rows(30_000, seed=8)
    index = VectorIndex(matrix)
    index.build_hnsw()
    rng = np.random.default_rng(9)
    mask = rng.random(len(matrix)) < share
    queries = matrix[rng.integers(0, len(matrix), 50)] + \
        0.05 * rng.standard_normal((50, matrix.shape[1])).astype(np.float32)
    recalls = []
    for query in queries:
        found = index.search(query, 10, mask)
        assert all(mask[row] for row, _ in found)
        recalls.append(recall(found, exact_filtered(matrix, query, mask, 10)))
    assert float(np.mean(recalls)) >= 0.95
