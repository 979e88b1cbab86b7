"""Versions of vector databases: an update beside a full build, the active-version pointer
at 100,000 chunks, and filtered search at 100,000 chunks.

    .venv/bin/python bench/versions.py                   # all three, ~10 minutes on 2 cores
    .venv/bin/python bench/versions.py --only reingest   # reingest | pointer | filtered
    .venv/bin/python bench/versions.py --store postgres --out bench/results/versions

Needs the `embeddings` extra (and `ann` for the HNSW rows). Everything runs on
127.0.0.1 and in temporary folders or scratch databases; every loop is bounded.

- reingest: a real `genai-jobs serve` builds a vector database of N documents (the rows
  of a CSV, one chunk each, the real model), then updates it (`replace`) from the same
  documents uploaded again, then from a copy with 1 % of them changed. Each time is the build
  job's `startedAt` to `finishedAt`; the ratios to the full build are the result.
- pointer: two versions of 100,000 chunks in one family (vectors written through the
  store API); the family's active version switched back and forth over HTTP, and a
  search of the family after each switch.
- filtered: the same version searched over HTTP with filters matching 1 % and 50 % of
  its chunks and with none; then in process, the mask and the exact search without
  the query's embedding, and through an HNSW graph with recall@10 against exact.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# As bench/vectors.py: bench/ off sys.path, the repository and src on it.
sys.path[:] = [str(REPO), str(REPO / "src"),
               *(entry for entry in sys.path if Path(entry or ".").resolve() != REPO / "bench")]

from bench.vectors import DIM, _finished, _p, _seconds, clustered_vectors  # noqa: E402
from tests.pg_support import scratch_store  # noqa: E402
from tests.support import Server, start_server  # noqa: E402
from tests.vectors_support import API, DATASETS  # noqa: E402

DOCUMENTS = 10_000
CHANGED_SHARE = 0.01
ROWS = 100_000
SWITCHES = 20
QUERIES = 100
# Metadata of the synthetic chunks: `bucket` n % 100 (a bucket is 1 % of them).
BUCKETS = 100

SUBJECTS = ["The pump", "Our router", "The invoice run", "A backup job", "The heat sensor",
            "The badge reader", "Each laptop", "The night shift", "The loading dock"]
VERBS = ["reports", "needs", "logs", "skips", "resets", "checks", "sends", "locks"]
OBJECTS = ["a pressure fault", "its firmware", "the audit trail", "an error code",
           "the spare parts list", "the weekly summary", "the access list", "a warning light"]


def document(n: int, edition: int = 0) -> bytes:
    """Document `n`, about 40 tokens, unlike every other (its numbers); `edition` > 0
    rewrites its last sentence."""
    first = (f"{SUBJECTS[n % 9]} {VERBS[(n // 9) % 8]} {OBJECTS[(n // 72) % 8]} "
             f"on site {n % 97} every {2 + n % 11} days.")
    second = f"Record {n} was filed by team {n % 13} in week {1 + n % 52}."
    if edition:
        second = f"Record {n} was revised (edition {edition}) after review {n % 17}."
    return f"{first} {second}".encode()


def corpus_csv(documents: int, changed: frozenset[int] | set[int] = frozenset()) -> bytes:
    """A CSV dataset of `documents` rows, a document each (an upload of files holds at
    most 1,000 by default; a CSV up to 100,000 rows), with a metadata column."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["document", "document_file_path", "team"])
    for n in range(documents):
        writer.writerow([document(n, 1 if n in changed else 0).decode(), f"docs/{n:05d}.txt",
                         f"team {n % 13}"])
    return out.getvalue().encode()


@contextmanager
def server_on(store: str, tmp: Path, *extra: str) -> Iterator[Server]:
    with scratch_store(store) as url:
        server = start_server(tmp, *extra, database_url=url)
        try:
            yield server
        finally:
            server.service.terminate()
            server.service.close()


def _upload(client: Any, content: bytes) -> tuple[str, float]:
    started = time.perf_counter()
    response = client.post(f"{DATASETS}/fromFile/",
                           files={"file": ("corpus.csv", content, "text/csv")})
    assert response.status_code == 202, response.text
    return str(response.json()["catalogId"]), time.perf_counter() - started


def _job_seconds(job: dict[str, Any]) -> float:
    return _seconds(job["finishedAt"]) - _seconds(job["startedAt"])


def reingest(store: str, documents: int = DOCUMENTS) -> dict[str, Any]:
    changed = set(range(0, documents, round(1 / CHANGED_SHARE)))
    with (tempfile.TemporaryDirectory() as tmp,
          server_on(store, Path(tmp), "--workers", "1") as server,
          server.client(timeout=600) as client):
        warm, _ = _upload(client, corpus_csv(3))
        _finished(client, _create(client, warm)["buildStatusId"])  # loads the model
        dataset, full_upload = _upload(client, corpus_csv(documents))
        vdb = _create(client, dataset)
        full = _finished(client, vdb["buildStatusId"])
        rows: dict[str, Any] = {"full": _row(full, full_upload)}
        for name, content in (("unchanged", corpus_csv(documents)),
                              ("changed_1pct", corpus_csv(documents, changed))):
            again, upload_seconds = _upload(client, content)
            response = client.post(f"{API}/vectorDatabases/{vdb['id']}/versions/",
                                   json={"datasetId": again, "mode": "replace"})
            assert response.status_code == 202, response.text
            rows[name] = _row(_finished(client, response.json()["buildStatusId"]),
                              upload_seconds)
    full_seconds = rows["full"]["job_seconds"]
    for name in ("unchanged", "changed_1pct"):
        rows[name]["ratio_to_full"] = round(rows[name]["job_seconds"] / full_seconds, 4)
    rows["changed_1pct"]["target_ratio"] = round(0.05 + len(changed) / documents, 4)
    rows["unchanged"]["target_ratio"] = 0.05
    return {"store": store, "documents": documents, "changed": len(changed), **rows}


def _create(client: Any, dataset_id: str) -> dict[str, Any]:
    response = client.post(f"{API}/vectorDatabases/", json={
        "datasetId": dataset_id, "chunkingParameters": {"chunkSize": 64, "separators": []}})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _row(job: dict[str, Any], upload_seconds: float) -> dict[str, Any]:
    result = job["result"]
    return {"job_seconds": round(_job_seconds(job), 2), "upload_seconds": round(upload_seconds, 2),
            "chunks": result["chunkCount"], "embedded": result["embeddedChunks"],
            "changes": result.get("changes")}


# -- pointer and filtered search --------------------------------------------------------


async def _write_family(database_url: str, tenant: str, rows: int) -> tuple[str, str]:
    """Two built versions of one family, `rows` chunks each (the second's vectors
    another draw), chunk n with metadata {"bucket": n % BUCKETS}; the second active."""
    from genai_jobs.store import create_store
    from genai_jobs.vectors.embeddings import DEFAULT_MODEL
    from genai_jobs.vectors.records import (
        BuildOutcome,
        Document,
        DocumentKind,
        NewChunk,
        NewDataset,
        NewVectorDatabase,
    )
    from genai_jobs.vectors.store import vector_store_for

    store = create_store(database_url)
    await store.open()
    try:
        await store.migrate()
        vectors = vector_store_for(store)
        dataset = await vectors.create_dataset(NewDataset(
            id=uuid.uuid4(), tenant=tenant, name="synthetic", created_by=tenant,
            documents=[Document("synthetic.txt", DocumentKind.TEXT, b"synthetic")]))
        ids: list[uuid.UUID] = []
        for version in range(2):
            vdb_id = uuid.uuid4()
            await vectors.create_vector_database(NewVectorDatabase(
                id=vdb_id, tenant=tenant, name="bench", dataset_id=dataset.id,
                dataset_name="synthetic", embedding_model=DEFAULT_MODEL, dimensions=DIM,
                chunk_size=64, chunk_overlap=0, chunk_overlap_percentage=0, separators=(),
                url="", use_case_id="bench", created_by=tenant,
                parent_id=ids[0] if ids else None, family_id=ids[0] if ids else None))
            build_id = uuid.uuid4()
            await vectors.start_build(vdb_id, uuid.uuid4(), build_id)
            matrix = clustered_vectors(rows, seed=7 + version)
            for first in range(0, rows, 2000):
                last = min(first + 2000, rows)
                await vectors.add_chunks(vdb_id, build_id, first, [
                    NewChunk(f"doc{seq // 10}.txt", seq % 10, None, 0, 0,
                             document(seq).decode(), {"bucket": seq % BUCKETS},
                             kind=DocumentKind.TEXT)
                    for seq in range(first, last)])
                await vectors.add_vectors(vdb_id, build_id, first, last - first,
                                          matrix[first:last].tobytes())
            await vectors.finish_build(vdb_id, build_id, BuildOutcome(
                rows, rows * DIM * 4, [], [], {}, ids[0] if ids else None))
            ids.append(vdb_id)
        return str(ids[0]), str(ids[1])
    finally:
        await store.close()


def pointer_and_filtered(store: str, rows: int = ROWS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, scratch_store(store) as url:
        database_url = url or f"sqlite:///{Path(tmp) / 'jobs.db'}"
        first, second = asyncio.run(_write_family(database_url, "admin", rows))
        server = start_server(Path(tmp), "--workers", "0", database_url=database_url,
                              admin_token=None)
        try:
            with server.client(timeout=300) as client:
                result = {"store": store, "rows": rows,
                          "pointer": _pointer(client, first, second),
                          "filtered_http": _filtered_http(client, second)}
        finally:
            server.service.terminate()
            server.service.close()
        result["hybrid_in_process"] = asyncio.run(hybrid_in_process(database_url, second))
    result["filtered_in_process"] = filtered_in_process(rows)
    return result


async def hybrid_in_process(database_url: str, vdb_id: str) -> dict[str, Any]:
    """What a hybrid search costs past the query's embedding, without HTTP: the dense
    search (50 candidates), the store's keyword query (50) and their fusion, for 100
    questions that each name another record number."""
    import numpy as np

    from genai_jobs.store import create_store
    from genai_jobs.vectors.index import VectorIndex
    from genai_jobs.vectors.keywords import fuse
    from genai_jobs.vectors.search import load_matrix
    from genai_jobs.vectors.store import vector_store_for

    store = create_store(database_url)
    await store.open()
    try:
        vectors = vector_store_for(store)
        vdb = await vectors.get_vector_database(uuid.UUID(vdb_id), None)
        index = VectorIndex(await load_matrix(vectors, vdb))
        rng = np.random.default_rng(3)
        await vectors.keyword_search(vdb.id, "record 1", 50)  # SQLite: makes its index
        dense, words, total = [], [], []
        for n in range(QUERIES):
            query = index.matrix[int(rng.integers(0, len(index.matrix)))]
            started = time.perf_counter()
            best = index.search(query, 50)
            middle = time.perf_counter()
            found = await vectors.keyword_search(vdb.id, f"Who filed record {n * 997}?", 50)
            fuse([[row for row, _ in best], [row for row, _ in found]], 10, [1.0, 2.0])
            ended = time.perf_counter()
            dense.append((middle - started) * 1000)
            words.append((ended - middle) * 1000)
            total.append((ended - started) * 1000)
        return {"dense_p50_ms": _p(dense, 50), "keyword_p50_ms": _p(words, 50),
                "hybrid_p50_ms": _p(total, 50), "hybrid_p99_ms": _p(total, 99)}
    finally:
        await store.close()


def _search(client: Any, vdb_id: str, **body: Any) -> float:
    started = time.perf_counter()
    response = client.post(f"{API}/vectorDatabases/{vdb_id}/search/",
                           json={"query": "Which pump reports a pressure fault on site 3?",
                                 "k": 10, **body})
    assert response.status_code == 200, response.text
    return (time.perf_counter() - started) * 1000


def _pointer(client: Any, first: str, second: str) -> dict[str, Any]:
    """Switch the family's active version back and forth; each switch, then a search of
    the family (both versions' vectors loaded beforehand: the switch itself is timed,
    not a first load)."""
    cold = [_search(client, vdb_id) for vdb_id in (first, second)]
    switches, searches = [], []
    for n in range(SWITCHES):
        target = first if n % 2 == 0 else second
        started = time.perf_counter()
        response = client.put(f"{API}/vectorDatabases/{second}/activeVersion/",
                              json={"vectorDatabaseId": target})
        assert response.status_code == 200, response.text
        switches.append((time.perf_counter() - started) * 1000)
        searches.append(_search(client, second, useActiveVersion=True))
    return {"switches": SWITCHES, "switch_p50_ms": _p(switches, 50),
            "switch_max_ms": round(max(switches), 2),
            "search_after_switch_p50_ms": _p(searches, 50),
            "first_search_of_each_version_ms": [round(value) for value in cold]}


def _filtered_http(client: Any, vdb_id: str) -> dict[str, Any]:
    """Dense searches with filters of 1 % and 50 % and none; then keyword and hybrid
    searches of a question with a record number (a code: hybrid asks the keyword index
    too), beside the dense search of the same question (which costs the same embedding)."""
    one, half = {"bucket": 7}, {"bucket": {"$lt": BUCKETS // 2}}
    cases: dict[str, dict[str, Any]] = {
        "none": {}, "1pct": {"filter": one}, "50pct": {"filter": half},
        "code_dense": {"query": "Who filed record 4172?"},
        "code_keyword": {"query": "Who filed record 4172?", "mode": "keyword"},
        "code_hybrid": {"query": "Who filed record 4172?", "mode": "hybrid"},
        "code_hybrid_1pct": {"query": "Who filed record 4172?", "mode": "hybrid",
                             "filter": one}}
    found: dict[str, Any] = {}
    for name, body in cases.items():
        # The first of each reads what it needs once (fields, the keyword index).
        found[f"{name}_first_ms"] = round(_search(client, vdb_id, **body), 1)
        times = [_search(client, vdb_id, **body) for _ in range(QUERIES)]
        found[f"{name}_p50_ms"] = _p(times, 50)
        found[f"{name}_p99_ms"] = _p(times, 99)
    return found


def filtered_in_process(rows: int) -> dict[str, Any]:
    """The mask and the search alone (no query embedding), exact and HNSW."""
    import numpy as np

    from genai_jobs.vectors.fields import Fields
    from genai_jobs.vectors.filters import parse_filter
    from genai_jobs.vectors.index import VectorIndex, faiss_available

    matrix = clustered_vectors(rows, seed=8)
    fields = Fields([(f"doc{seq // 10}.txt", "text", None, {"bucket": seq % BUCKETS})
                     for seq in range(rows)])
    rng = np.random.default_rng(5)
    queries = matrix[rng.integers(0, rows, QUERIES)] + \
        0.3 * rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = VectorIndex(matrix)
    result: dict[str, Any] = {}
    truths: dict[str, list[Any]] = {}
    for name, where in (("1pct", {"bucket": 7}), ("50pct", {"bucket": {"$lt": 50}})):
        parsed = parse_filter(where)
        times, truths[name] = [], []
        for query in queries:
            started = time.perf_counter()
            mask = fields.mask(parsed)
            truths[name].append(index.search(query, 10, mask))
            times.append((time.perf_counter() - started) * 1000)
        result[f"exact_{name}_p50_ms"] = _p(times, 50)
    if faiss_available():
        index.build_hnsw()
        for name, where in (("1pct", {"bucket": 7}), ("50pct", {"bucket": {"$lt": 50}})):
            mask = fields.mask(parse_filter(where))
            times, recalls = [], []
            for query, truth in zip(queries, truths[name], strict=True):
                started = time.perf_counter()
                found = index.search(query, 10, mask)
                times.append((time.perf_counter() - started) * 1000)
                recalls.append(len({row for row, _ in found} & {row for row, _ in truth}) / 10)
            result[f"hnsw_{name}_p50_ms"] = _p(times, 50)
            result[f"hnsw_{name}_recall_at_10"] = round(statistics.mean(recalls), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["reingest", "pointer"], nargs="*",
                        help="pointer also runs the filtered searches")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--documents", type=int, default=DOCUMENTS)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    wanted = set(args.only or ["reingest", "pointer"])
    results: dict[str, Any] = {}
    if "pointer" in wanted:
        results["pointer_and_filtered"] = pointer_and_filtered(args.store, args.rows)
        print(json.dumps(results["pointer_and_filtered"]), flush=True)
    if "reingest" in wanted:
        results["reingest"] = reingest(args.store, args.documents)
        print(json.dumps(results["reingest"]), flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"results-{args.store}.json").write_text(json.dumps(results, indent=2)
                                                             + "\n")


if __name__ == "__main__":
    main()
