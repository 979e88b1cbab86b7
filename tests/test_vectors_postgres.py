"""Datasets and vector databases on PostgreSQL: a build, search with known answers, the
stored vectors, an abort mid-build and tenancy, through a real server on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.pg_support import create_database, drop_database, require_postgres
from tests.support import Server, start_server, wait_for_status
from tests.vectors_support import (
    API,
    DATASETS,
    QUESTIONS,
    corpus_files,
    create_dataset,
    create_vdb,
    filler_text,
    follow_build,
    wait_for_progress,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_postgres()
    url = create_database()
    running = start_server(tmp_path_factory.mktemp("vectors-pg"), "--workers", "1",
                           database_url=url, env={"GENAI_JOBS_VECTOR_BUILD_BATCH_SIZE": "8"})
    try:
        yield running
    finally:
        running.service.terminate()
        running.service.close()
        drop_database(url)


@pytest.fixture(scope="module")
def client(api: Server) -> Iterator[httpx.Client]:
    with api.client(api.make_token("pg-library"), timeout=120) as http:
        yield http


def rows(api: Server, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with psycopg.connect(api.database_url) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def built(client: httpx.Client) -> dict[str, Any]:
    vdb = create_vdb(client, create_dataset(client, corpus_files()), 24, 25)
    seen = follow_build(client, vdb["buildStatusId"], timeout=100)
    assert seen[-1]["status"] == "COMPLETED", seen[-1]
    return vdb


def test_a_build_on_postgresql_stores_every_chunk_and_vector(api: Server, client: httpx.Client,
                                                             built: dict[str, Any]) -> None:
    info = client.get(f"{API}/vectorDatabases/{built['id']}/").json()
    assert info["executionStatus"] == "COMPLETED"
    total = info["chunksCount"]
    seqs = rows(api, "SELECT seq FROM vector_chunks WHERE vdb_id = %s ORDER BY seq",
                (built["id"],))
    assert [seq for (seq,) in seqs] == list(range(total))
    [(vectors, blob_bytes)] = rows(api, "SELECT SUM(count), SUM(length(vectors)) FROM"
                                   " vector_batches WHERE vdb_id = %s", (built["id"],))
    assert (vectors, blob_bytes) == (total, total * 384 * 4)


@pytest.mark.parametrize(("question", "document", "phrase", "page"), QUESTIONS)
def test_search_on_postgresql_returns_the_passage_that_answers(
        client: httpx.Client, built: dict[str, Any], question: str, document: str,
        phrase: str, page: int | None) -> None:
    response = client.post(f"{API}/vectorDatabases/{built['id']}/search/",
                           json={"query": question, "k": 1})
    assert response.status_code == 200, response.text
    [best] = response.json()["data"]
    assert (best["documentName"], best["page"]) == (document, page)
    assert phrase in " ".join(best["text"].split())


def test_other_tenants_get_404_on_postgresql(api: Server, built: dict[str, Any]) -> None:
    with api.client(api.make_token("pg-stranger")) as other:
        assert other.get(f"{API}/vectorDatabases/{built['id']}/").status_code == 404
        assert other.get(f"{DATASETS}/{built['datasetId']}/").status_code == 404
        assert other.post(f"{API}/vectorDatabases/{built['id']}/search/",
                          json={"query": "x"}).status_code == 404


def test_an_abort_mid_build_on_postgresql_leaves_nothing(api: Server,
                                                         client: httpx.Client) -> None:
    dataset_id = create_dataset(client, [("long.txt", filler_text(1500).encode())])
    vdb = create_vdb(client, dataset_id, 16, 13)
    wait_for_progress(client, vdb["buildStatusId"], "embedded")
    assert client.delete(f"{API}/status/{vdb['buildStatusId']}/").status_code == 202
    wait_for_status(client, vdb["buildStatusId"], "ABORTED", timeout=10)
    info = client.get(f"{API}/vectorDatabases/{vdb['id']}/").json()
    assert (info["executionStatus"], info["chunksCount"]) == ("ERROR", 0)
    for table in ("vector_chunks", "vector_batches"):
        assert rows(api, f"SELECT COUNT(*) FROM {table} WHERE vdb_id = %s",
                    (vdb["id"],)) == [(0,)]


def test_deleting_on_postgresql_removes_the_rows(api: Server, client: httpx.Client) -> None:
    vdb = create_vdb(client, create_dataset(client, [("a.txt", b"A short note.")]), 32, 13)
    follow_build(client, vdb["buildStatusId"], timeout=60)
    assert client.delete(f"{API}/vectorDatabases/{vdb['id']}/").status_code == 204
    assert rows(api, "SELECT COUNT(*) FROM vector_chunks WHERE vdb_id = %s",
                (vdb["id"],)) == [(0,)]
    assert client.get(f"{API}/vectorDatabases/{vdb['id']}/").status_code == 404
