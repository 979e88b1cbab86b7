"""Versions of a vector database made from changed datasets, through a real server on
SQLite and on PostgreSQL with the real model: what each update reports is what changed,
unchanged content is never embedded again, an update answers searches exactly as a
build from scratch would, and the family's searches move only to a COMPLETED version
(or by hand: a rollback)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.pg_support import scratch_store
from tests.support import Server, ServiceProcess, run_cli, running_server
from tests.test_vectors_filters import matches
from tests.vectors_support import (
    API,
    MANUAL_PAGES,
    create_dataset,
    create_vdb,
    filler_text,
    follow_build,
    make_pdf,
    wait_for_progress,
)

pytestmark = pytest.mark.slow

DOCS = {
    "alpha.txt": "The lighthouse keeper climbs the spiral stairs at dusk and lights the great "
                 "lamp, which turns all night so that ships can find the harbour entrance.",
    "beta.txt": "Tides rise and fall twice a day because the Moon pulls on the oceans; the "
                "highest spring tides come when the Sun and the Moon are in line.",
    "gamma.md": "# Sourdough\n\nFeed the starter the evening before, fold the dough every half "
                "hour, and bake the loaf in a covered pot at 230 degrees Celsius.",
    "delta.txt": "Jupiter is the largest planet in the solar system, a gas giant more than "
                 "eleven times as wide as the Earth, with a storm older than telescopes.",
    "epsilon.txt": "The emperor penguin breeds during the harsh Antarctic winter, and the male "
                   "keeps the egg warm on his feet for about two months.",
}
NEW_DOC = ("zeta.txt", "Volcanoes erupt when magma rises through cracks in the crust; Iceland "
                       "sits on a ridge where two plates pull apart.")
# beta.txt with a sentence added at its end: its first chunks are the same content.
BETA_CHANGED = DOCS["beta.txt"] + (" Sailors print tide tables every spring and keep them "
                                   "beside the charts of the bay.")
QUESTIONS = ["Who lights the lamp at night?", "Why are there tides?", "How hot is the oven?",
             "Where do penguins keep their eggs?", "What makes a volcano erupt?",
             "Which planet is the biggest?"]
CHUNK_SIZE = 16


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kind = str(request.param)
    with scratch_store(kind) as url, running_server(
            tmp_path_factory.mktemp(f"versions-{kind}"), "--workers", "1", database_url=url,
            env={"GENAI_JOBS_VECTOR_BUILD_BATCH_SIZE": "8"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(api: Server) -> Iterator[httpx.Client]:
    with api.client(api.make_token("versions"), timeout=120) as http:
        yield http


def files(docs: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, text.encode()) for name, text in docs.items()]


def finished(client: httpx.Client, vdb: dict[str, Any], state: str = "COMPLETED") -> dict[str, Any]:
    final = follow_build(client, vdb["buildStatusId"], timeout=180)[-1]
    assert final["status"] == state, final
    body = dict(client.get(f"{API}/vectorDatabases/{vdb['id']}/").json())
    body["result"] = final["result"]
    return body


def built(client: httpx.Client, docs: dict[str, str]) -> dict[str, Any]:
    dataset_id = create_dataset(client, files(docs))
    return finished(client, create_vdb(client, dataset_id, CHUNK_SIZE))


def update(client: httpx.Client, vdb_id: str, docs: dict[str, str], mode: str,
           **fields: Any) -> dict[str, Any]:
    """POST a new version made from `docs` and answer its (not yet built) record."""
    dataset_id = create_dataset(client, files(docs))
    response = client.post(f"{API}/vectorDatabases/{vdb_id}/versions/",
                           json={"datasetId": dataset_id, "mode": mode, **fields})
    assert response.status_code == 202, response.text
    assert response.headers["Location"].endswith(f"/status/{response.json()['buildStatusId']}/")
    body: dict[str, Any] = response.json()
    return body


def hits(client: httpx.Client, vdb_id: str, active: bool = False) -> list[list[Any]]:
    """Every question's hits as (document, chunk, text, score)."""
    found = []
    for question in QUESTIONS:
        response = client.post(f"{API}/vectorDatabases/{vdb_id}/search/",
                               json={"query": question, "k": 4, "useActiveVersion": active})
        assert response.status_code == 200, response.text
        found.append([(hit["documentName"], hit["chunkIndex"], hit["text"], hit["score"])
                      for hit in response.json()["data"]])
    return found


_CHUNKS: dict[str, int] = {}


def chunks_of(client: httpx.Client, name: str, text: str) -> int:
    """How many chunks the document makes, from a build of it alone (the truth an
    update's counts are checked against)."""
    if text not in _CHUNKS:
        _CHUNKS[text] = built(client, {name: text})["chunksCount"]
    return _CHUNKS[text]


def same_hits(got: list[list[Any]], expected: list[list[Any]]) -> None:
    """The same chunks in the same order; scores equal to float32 precision (an update
    copies vectors that a build from scratch computes in other batches)."""
    assert [[hit[:3] for hit in each] for each in got] == \
           [[hit[:3] for hit in each] for each in expected]
    for mine, theirs in zip(got, expected, strict=True):
        for hit, other in zip(mine, theirs, strict=True):
            assert hit[3] == pytest.approx(other[3], abs=1e-5)


def test_a_replace_update_reports_true_counts_and_searches_as_a_fresh_build(
        client: httpx.Client) -> None:
    first = built(client, DOCS)
    changed = {**DOCS, "beta.txt": BETA_CHANGED, NEW_DOC[0]: NEW_DOC[1]}
    del changed["delta.txt"]
    version = finished(client, update(client, first["id"], changed, "replace"))
    assert (version["version"], version["parentId"], version["familyId"]) == \
           (2, first["id"], first["id"])
    assert version["updateMode"] == "replace"
    changes = version["changes"]
    assert changes == version["result"]["changes"]
    assert changes["documents"] == {"added": 1, "updated": 1, "skipped": 3, "deleted": 1}
    unchanged = sum(chunks_of(client, name, DOCS[name])
                    for name in ("alpha.txt", "gamma.md", "epsilon.txt"))
    chunks = changes["chunks"]
    assert chunks["added"] == chunks_of(client, *NEW_DOC)
    assert chunks["updated"] == chunks_of(client, "beta.txt", BETA_CHANGED)
    assert chunks["skipped"] == unchanged
    assert chunks["deleted"] == (chunks_of(client, "delta.txt", DOCS["delta.txt"])
                                 + chunks_of(client, "beta.txt", DOCS["beta.txt"]))
    assert version["chunksCount"] == chunks["added"] + chunks["updated"] + chunks["skipped"]
    # beta.txt's first chunks were embedded for version 1: only its new ones, and the
    # new document's, went to the model.
    assert chunks["embedded"] + chunks["reused"] == chunks["added"] + chunks["updated"]
    assert chunks["reused"] >= 1
    assert chunks["embedded"] >= chunks["added"] + 1
    assert version["result"]["embeddedChunks"] == chunks["embedded"]
    # Searched, the update is a build from scratch of the same documents.
    fresh = built(client, changed)
    assert fresh["chunksCount"] == version["chunksCount"]
    same_hits(hits(client, version["id"]), hits(client, fresh["id"]))


def test_unchanged_content_is_never_embedded_again_anywhere_in_the_family(
        client: httpx.Client) -> None:
    first = built(client, DOCS)
    before = hits(client, first["id"])
    again = finished(client, update(client, first["id"], DOCS, "replace"))
    assert again["changes"]["documents"] == {"added": 0, "updated": 0, "skipped": 5,
                                             "deleted": 0}
    assert again["changes"]["chunks"]["embedded"] == 0
    assert again["changes"]["chunks"]["skipped"] == first["chunksCount"] == again["chunksCount"]
    assert hits(client, again["id"]) == before  # the very same vectors
    # Version 3 drops two documents; version 4 brings them back from its parent, which
    # lacks them: their chunks are found in version 1 and 2 and not embedded either.
    fewer = {name: text for name, text in DOCS.items() if name not in ("beta.txt", "delta.txt")}
    third = finished(client, update(client, first["id"], fewer, "replace"))
    assert third["changes"]["documents"]["deleted"] == 2
    fourth = finished(client, update(client, first["id"], DOCS, "replace"))
    assert fourth["parentId"] == third["id"]
    assert fourth["changes"]["documents"] == {"added": 2, "updated": 0, "skipped": 3,
                                              "deleted": 0}
    assert fourth["changes"]["chunks"]["embedded"] == 0
    assert fourth["changes"]["chunks"]["reused"] == fourth["changes"]["chunks"]["added"] > 0
    assert sorted(map(sorted, hits(client, fourth["id"]))) == sorted(map(sorted, before))


def test_an_add_update_replaces_a_document_of_the_same_name_and_deletes_nothing(
        client: httpx.Client) -> None:
    first = built(client, DOCS)
    version = finished(client, update(client, first["id"], {"beta.txt": BETA_CHANGED,
                                                            NEW_DOC[0]: NEW_DOC[1]}, "add"))
    assert version["changes"]["documents"] == {"added": 1, "updated": 1, "skipped": 4,
                                               "deleted": 0}
    assert version["addedDatasetIds"][0] == first["datasetId"]
    assert len(version["addedDatasetIds"]) == 2
    expected = {**DOCS, "beta.txt": BETA_CHANGED, NEW_DOC[0]: NEW_DOC[1]}
    same_hits(hits(client, version["id"]), hits(client, built(client, expected)["id"]))


def test_the_family_searches_its_active_version_which_moves_on_completion_and_by_hand(
        client: httpx.Client) -> None:
    first = built(client, DOCS)
    v1_hits = hits(client, first["id"])
    assert hits(client, first["id"], active=True) == v1_hits
    # A long update: while it builds, and once it is aborted, version 1 answers as before.
    slow = update(client, first["id"], {"long.txt": filler_text(3000)}, "add")
    wait_for_progress(client, slow["buildStatusId"], "embedded", timeout=120)
    assert hits(client, first["id"], active=True) == v1_hits
    assert client.delete(f"{API}/status/{slow['buildStatusId']}/").status_code == 202
    aborted = follow_build(client, slow["buildStatusId"])[-1]
    assert aborted["status"] == "ABORTED"
    assert hits(client, first["id"], active=True) == v1_hits
    versions = client.get(f"{API}/vectorDatabases/{first['id']}/versions/").json()
    assert versions["activeVersionId"] == first["id"]
    assert [item["executionStatus"] for item in versions["data"]] == ["COMPLETED", "ERROR"]
    # A completed update takes over the family's searches...
    second = finished(client, update(client, first["id"], {NEW_DOC[0]: NEW_DOC[1]}, "add"))
    assert second["result"]["active"] is True
    assert second["parentId"] == first["id"]
    v2_hits = hits(client, second["id"])
    assert v2_hits != v1_hits
    assert hits(client, first["id"], active=True) == v2_hits
    # ...and a rollback is a pointer: no build, at once.
    started = time.monotonic()
    response = client.put(f"{API}/vectorDatabases/{second['id']}/activeVersion/",
                          json={"vectorDatabaseId": first["id"]})
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 5
    assert response.json()["activeVersionId"] == first["id"]
    assert hits(client, second["id"], active=True) == v1_hits
    # An update starts from the active version; a build whose parent is no longer active
    # completes without taking the family's searches.
    third = finished(client, update(client, first["id"], DOCS, "replace"))
    assert third["parentId"] == first["id"]
    assert third["result"]["active"] is True
    fourth = finished(client, update(client, first["id"], DOCS, "replace",
                                     parentVectorDatabaseId=second["id"]))
    assert fourth["result"]["active"] is False
    assert client.get(f"{API}/vectorDatabases/{first['id']}/versions/").json()[
        "activeVersionId"] == third["id"]


def test_pointing_the_family_at_a_version_it_cannot_use_is_refused(
        client: httpx.Client) -> None:
    first = built(client, DOCS)
    other = built(client, {NEW_DOC[0]: NEW_DOC[1]})
    response = client.put(f"{API}/vectorDatabases/{first['id']}/activeVersion/",
                          json={"vectorDatabaseId": other["id"]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "vectorDatabaseId"]
    slow = update(client, first["id"], {"long.txt": filler_text(3000)}, "add")
    response = client.put(f"{API}/vectorDatabases/{first['id']}/activeVersion/",
                          json={"vectorDatabaseId": slow["id"]})
    assert response.status_code == 409, response.text
    assert client.delete(f"{API}/status/{slow['buildStatusId']}/").status_code == 202
    follow_build(client, slow["buildStatusId"])
    response = client.post(f"{API}/vectorDatabases/{first['id']}/versions/",
                           json={"datasetId": first["datasetId"], "mode": "sync"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "mode"]


def test_deleting_the_active_version_moves_the_family_to_its_newest_other(
        client: httpx.Client) -> None:
    first = built(client, DOCS)
    second = finished(client, update(client, first["id"], {NEW_DOC[0]: NEW_DOC[1]}, "add"))
    v1_hits = hits(client, first["id"])
    assert client.delete(f"{API}/vectorDatabases/{second['id']}/").status_code == 204
    versions = client.get(f"{API}/vectorDatabases/{first['id']}/versions/").json()
    assert versions["activeVersionId"] == first["id"]
    assert hits(client, first["id"], active=True) == v1_hits


def test_an_update_that_expires_or_fails_leaves_the_family_as_it_was(
        client: httpx.Client) -> None:
    first = built(client, DOCS)
    v1_hits = hits(client, first["id"], active=True)
    # `first` has loaded the model: the deadline falls while the update embeds.
    late = update(client, first["id"], {"long.txt": filler_text(3000)}, "add", expiresIn=3)
    assert finished(client, late, "EXPIRED")["executionStatus"] == "ERROR"
    failed = update(client, first["id"], {"blank.html": "<p> </p>"}, "replace")
    final = follow_build(client, failed["buildStatusId"])[-1]
    assert final["status"] == "ERROR"
    assert "no text to index" in final["message"]
    assert hits(client, first["id"], active=True) == v1_hits
    versions = client.get(f"{API}/vectorDatabases/{first['id']}/versions/").json()
    assert versions["activeVersionId"] == first["id"]
    assert [item["executionStatus"] for item in versions["data"]] == ["COMPLETED", "ERROR",
                                                                      "ERROR"]


@pytest.fixture(params=["sqlite", "postgres"])
def separate_workers(request: pytest.FixtureRequest,
                     tmp_path: Any) -> Iterator[tuple[Server, list[ServiceProcess]]]:
    """A server that runs no jobs itself (`--workers 0`), and the workers a test starts."""
    kind = str(request.param)
    workers: list[ServiceProcess] = []
    with scratch_store(kind) as url, running_server(tmp_path, "--workers", "0",
                                                    database_url=url) as running:
        try:
            yield running, workers
        finally:
            for worker in workers:
                worker.close()


def test_a_worker_killed_mid_update_leaves_the_family_answering_as_before(
        separate_workers: tuple[Server, list[ServiceProcess]]) -> None:
    server, workers = separate_workers
    env = {"GENAI_JOBS_VECTOR_BUILD_BATCH_SIZE": "8"}
    workers.append(server.start_worker(name="first", env=env))
    with server.client(timeout=120) as client:
        first = built(client, DOCS)
        v1_hits = hits(client, first["id"], active=True)
        slow = update(client, first["id"], {"long.txt": filler_text(1500)}, "add",
                      maxAttempts=2)
        wait_for_progress(client, slow["buildStatusId"], "embedded", timeout=120)
        workers[0].kill()  # SIGKILL: some of the version's rows are written, not all
        assert hits(client, first["id"], active=True) == v1_hits
        assert client.get(f"{API}/vectorDatabases/{first['id']}/versions/").json()[
            "activeVersionId"] == first["id"]
        workers.append(server.start_worker(name="rescuer", env=env))
        version = finished(client, slow)
        assert version["result"]["attempt"] == 2
        assert version["changes"]["documents"] == {"added": 1, "updated": 0, "skipped": 5,
                                                   "deleted": 0}
        assert version["changes"]["chunks"]["skipped"] == first["chunksCount"]
        assert hits(client, first["id"], active=True) == hits(client, version["id"])
        assert client.get(f"{API}/vectorDatabases/{first['id']}/versions/").json()[
            "activeVersionId"] == version["id"]


def test_the_command_line_updates_lists_versions_rolls_back_and_searches_the_active_one(
        api: Server, client: httpx.Client) -> None:
    env = {"GENAI_JOBS_URL": api.url,
           "GENAI_JOBS_TOKEN": client.headers["authorization"].split()[1]}
    first = built(client, DOCS)
    dataset_id = create_dataset(client, files({NEW_DOC[0]: NEW_DOC[1]}))
    updated = run_cli("vdb", "update", first["id"], "--dataset", dataset_id, "--mode", "add",
                      "--wait", "--timeout", "120", env=env, timeout=150)
    version_id, status = updated.stdout.splitlines()
    assert status.endswith(" COMPLETED")
    assert "version 2, from " + first["id"] in updated.stderr
    new_chunks = chunks_of(client, *NEW_DOC)
    assert (f"documents: 1 added, 0 updated, 5 unchanged, 0 deleted; chunks: {new_chunks} "
            f"added, 0 updated, {first['chunksCount']} unchanged, 0 deleted "
            f"({new_chunks} embedded, 0 reused)") in updated.stderr
    listed = run_cli("vdb", "versions", first["id"], env=env).stdout.splitlines()
    assert [line[:2] for line in listed] == ["  ", "* "]
    assert listed[1].startswith(f"* {version_id}  COMPLETED")
    searched = run_cli("vdb", "search", first["id"], "What makes a volcano erupt?", "-k", "1",
                       "--active", "--json", env=env)
    assert json.loads(searched.stdout)[0]["documentName"] == NEW_DOC[0]
    rolled = run_cli("vdb", "activate", version_id, first["id"], "--json", env=env)
    assert json.loads(rolled.stdout)["activeVersionId"] == first["id"]
    searched = run_cli("vdb", "search", version_id, "What makes a volcano erupt?", "-k", "1",
                       "--active", "--json", env=env)
    assert json.loads(searched.stdout)[0]["documentName"] != NEW_DOC[0]
    refused = run_cli("vdb", "update", first["id"], "--dataset", dataset_id, "--mode", "sync",
                      env=env, check=False)
    assert refused.returncode == 2
    assert "'sync' is not one of 'add', 'replace'" in refused.stderr


def test_the_python_client_updates_and_rolls_back(api: Server, client: httpx.Client) -> None:
    from genai_jobs.vectors.client import VectorClient

    first = built(client, DOCS)
    token = client.headers["authorization"].split()[1]
    with VectorClient(api.url, token=token) as vectors:
        dataset_id = create_dataset(client, files({"beta.txt": BETA_CHANGED}))
        version = vectors.update_vector_database(first["id"], dataset_id, "add")
        assert vectors.wait_for_build(version, timeout=120).status == "COMPLETED"
        version = vectors.get_vector_database(version.id)
        assert version.changes["documents"]["updated"] == 1
        assert version.update_mode == "add"
        family = vectors.versions(first["id"])
        assert family.active_version_id == version.id
        assert [info.version for info in family.data] == [1, 2]
        rolled_back = vectors.set_active_version(first["id"], first["id"])
        assert str(rolled_back.active_version_id) == first["id"]
        hit = vectors.search(version.id, "Why are there tides?", k=1, active=True)[0]
        assert hit.text in DOCS["beta.txt"]


FAQ_CSV = (
    "document,document_file_path,team,priority,public,reviewed\n"
    '"To rotate a token, create a new one, then revoke the old one.",faq/tokens.md,security,1,'
    "true,2026-11-02\n"
    '"Backups of the SQLite file are taken with its online backup command.",faq/backups.md,'
    "operations,2,false,2026-10-15\n"
    '"A job that is not finished by its deadline becomes EXPIRED.",,operations,3,true,\n'
    '"Passwords are never stored, only their salted hashes.",faq/passwords.md,security,2,false,'
    "2026-09-30\n"
    '"Invoices are sent on the first working day of each month.",faq/invoices.md,sales,,true,'
    "2026-08-01\n"
)
FILTERED: list[dict[str, Any]] = [
    {"team": "security"},
    {"priority": {"$lte": 2}},
    {"public": True, "team": {"$in": ["operations", "sales"]}},
    {"reviewed": {"$gte": "2026-10-01"}},
    {"$or": [{"team": "sales"}, {"$documentType": "pdf"}]},
    {"$page": 2},
    {"$documentName": {"$in": ["faq/tokens.md", "manual.pdf"]}},
]


def test_search_with_a_filter_takes_the_nearest_among_the_matching_chunks(
        client: httpx.Client) -> None:
    dataset_id = create_dataset(client, [("faq.csv", FAQ_CSV.encode())])
    first = finished(client, create_vdb(client, dataset_id, CHUNK_SIZE))
    pdf = create_dataset(client, [("manual.pdf", make_pdf(MANUAL_PAGES))])
    response = client.post(f"{API}/vectorDatabases/{first['id']}/versions/",
                           json={"datasetId": pdf, "mode": "add"})
    version = finished(client, response.json())
    question = "How do I keep my account safe?"

    def search(where: dict[str, Any] | None, k: int) -> list[dict[str, Any]]:
        response = client.post(f"{API}/vectorDatabases/{version['id']}/search/",
                               json={"query": question, "k": k, "filter": where})
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    everything = search(None, 100)
    assert len(everything) == version["chunksCount"]
    for where in FILTERED:
        wanted = [hit for hit in everything if _hit_matches(hit, where)]
        assert wanted, where
        assert [hit["text"] for hit in search(where, 100)] == [hit["text"] for hit in wanted]
        assert [hit["text"] for hit in search(where, 2)] == [hit["text"] for hit in wanted[:2]]
    refusals: list[tuple[dict[str, Any], list[str], str]] = [
        ({"colour": "red"}, ["body", "filter", "colour"], "no field 'colour'"),
        ({"priority": "high"}, ["body", "filter", "priority", "$eq"], "number values"),
        ({"team": {"$like": "s%"}}, ["body", "filter", "team", "$like"], "$like")]
    for bad, loc, words in refusals:
        response = client.post(f"{API}/vectorDatabases/{version['id']}/search/",
                               json={"query": question, "filter": bad})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
        assert words in response.json()["detail"][0]["msg"]


def _hit_matches(hit: dict[str, Any], where: dict[str, Any]) -> bool:
    """The filter read literally for one hit (the reference of test_vectors_filters)."""
    kind = "pdf" if hit["documentName"].endswith(".pdf") else "text"
    return matches((hit["documentName"], kind, hit["page"], hit["metadata"]), where)


def tamper(api: Server, sqlite_sql: str, postgres_sql: str, params: tuple[Any, ...]) -> None:
    """Change the store behind the server's back, as a bug or a hand would."""
    if api.database_url.startswith("sqlite"):
        path = api.database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
            conn.execute(sqlite_sql, params)
    else:
        with psycopg.connect(api.database_url, autocommit=True) as pg:
            pg.execute(postgres_sql, params)


def rotate_first_batch(api: Server, vdb_id: str) -> None:
    """Move every vector of the version's first batch one row up (the first goes last)."""
    if api.database_url.startswith("sqlite"):
        path = api.database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
            (data,) = conn.execute("SELECT vectors FROM vector_batches WHERE vdb_id = ? AND"
                                   " first_seq = 0", (vdb_id,)).fetchone()
            conn.execute("UPDATE vector_batches SET vectors = ? WHERE vdb_id = ? AND"
                         " first_seq = 0", (data[1536:] + data[:1536], vdb_id))
        return
    with psycopg.connect(api.database_url, autocommit=True) as pg:
        row = pg.execute("SELECT vectors FROM vector_batches WHERE vdb_id = %s AND"
                         " first_seq = 0", (vdb_id,)).fetchone()
        assert row is not None
        data = bytes(row[0])
        pg.execute("UPDATE vector_batches SET vectors = %s WHERE vdb_id = %s AND"
                   " first_seq = 0", (data[1536:] + data[:1536], vdb_id))


def verified(client: httpx.Client, vdb_id: str, **payload: Any) -> dict[str, Any]:
    response = client.post(f"{API}/jobs/", json={"jobType": "vectorDatabase.verify",
                                                 "payload": {"vectorDatabaseId": vdb_id,
                                                             **payload}})
    assert response.status_code == 202, response.text
    final = follow_build(client, response.json()["statusId"])[-1]
    assert final["status"] == "COMPLETED", final
    return dict(final["result"])


def test_verify_finds_no_drift_in_a_sound_version_and_every_kind_of_drift_made_by_hand(
        api: Server, client: httpx.Client) -> None:
    first = built(client, DOCS)
    version = finished(client, update(client, first["id"], {NEW_DOC[0]: NEW_DOC[1]}, "add"))
    report = verified(client, version["id"], full=True)
    assert report["ok"] is True, report
    assert report["drift"] == []
    assert (report["chunks"], report["documents"], report["reembedded"]) == \
           (version["chunksCount"], 6, version["chunksCount"])
    vdb = version["id"]
    # A vector swapped for another chunk's, a chunk row lost, a content key that lies, and
    # a row past the end.
    rotate_first_batch(api, vdb)
    tamper(api, "DELETE FROM vector_chunks WHERE vdb_id = ? AND seq = 3",
           "DELETE FROM vector_chunks WHERE vdb_id = %s AND seq = 3", (vdb,))
    tamper(api, "UPDATE vector_chunks SET content_key = 'x' WHERE vdb_id = ? AND seq = 5",
           "UPDATE vector_chunks SET content_key = 'x' WHERE vdb_id = %s AND seq = 5", (vdb,))
    tamper(api, "INSERT INTO vector_chunks (vdb_id, seq, document, position, page, start_char,"
           " end_char, text, metadata) VALUES (?, 100000, 'ghost.txt', 0, NULL, 0, 5, 'ghost',"
           " '{}')",
           "INSERT INTO vector_chunks (vdb_id, seq, document, position, page, start_char,"
           " end_char, text, metadata) VALUES (%s, 100000, 'ghost.txt', 0, NULL, 0, 5,"
           " 'ghost', '{}')", (vdb,))
    report = verified(client, vdb, full=True)
    assert report["ok"] is False
    kinds = {item["kind"]: item for item in report["drift"]}
    assert set(kinds) == {"wrong_vectors", "missing_chunks", "wrong_content_key",
                          "extra_chunks"}, report
    assert kinds["missing_chunks"]["count"] == 1
    assert kinds["missing_chunks"]["examples"] == ["chunk 3 has a vector, no row"]
    assert kinds["wrong_content_key"]["count"] == 1
    assert kinds["extra_chunks"]["count"] == 1
    # The rotation moved every vector of the first batch one row up: each is wrong
    # (but the deleted chunk's, which has no row to compare).
    assert kinds["wrong_vectors"]["count"] >= 2
    assert first["chunksCount"] > 5
    # The version before is untouched, and a verify of another tenant's is refused.
    assert verified(client, first["id"], reembed=3)["ok"] is True
    with api.client(api.make_token("someone-else")) as stranger:
        response = stranger.post(f"{API}/jobs/", json={
            "jobType": "vectorDatabase.verify", "payload": {"vectorDatabaseId": vdb}})
        final = follow_build(stranger, response.json()["statusId"])[-1]
        assert final["status"] == "ERROR"
        assert "not found" in final["message"]


def test_vdb_verify_prints_the_report_and_exits_1_on_drift(api: Server,
                                                           client: httpx.Client) -> None:
    env = {"GENAI_JOBS_URL": api.url,
           "GENAI_JOBS_TOKEN": client.headers["authorization"].split()[1]}
    first = built(client, DOCS)
    sound = run_cli("vdb", "verify", first["id"], "--reembed", "4", "--wait", env=env)
    assert f"{first['chunksCount']} chunks of 5 documents checked, 4 embedded again: " \
           "no drift" in sound.stderr
    tamper(api, "DELETE FROM vector_chunks WHERE vdb_id = ? AND seq = 1",
           "DELETE FROM vector_chunks WHERE vdb_id = %s AND seq = 1", (first["id"],))
    drifted = run_cli("vdb", "verify", first["id"], "--wait", "--json", env=env, check=False)
    assert drifted.returncode == 1
    report = json.loads(drifted.stdout.split("\n", 1)[1])
    assert [item["kind"] for item in report["drift"]] == ["missing_chunks"]


CODES = {
    "errors/e-4172.md": "Error E-4172: the pump lost pressure at start-up. Check that the "
                        "inlet valve is open, then restart the pump.",
    "errors/e-4173.md": "Error E-4173: the pump lost pressure after a filter change. Replace "
                        "the gasket of the filter housing.",
    "errors/e-4712.md": "Error E-4712: the pump's pressure sensor sends no signal. Reseat "
                        "the sensor cable.",
    "parts/pn-55012-b.md": "Part PN-55012-B is the wall bracket of the X200 router.",
    "parts/pn-55012-c.md": "Part PN-55012-C is the wall bracket of the X300 router.",
    "hr/leave.md": "Staff may carry over up to five unused vacation days into the next "
                   "calendar year; the rest lapse on the first of January.",
}


def test_keyword_and_hybrid_search_find_exact_tokens_and_hybrid_keeps_paraphrases(
        client: httpx.Client) -> None:
    vdb = built(client, CODES)

    def top(query: str, mode: str, **body: Any) -> list[str]:
        response = client.post(f"{API}/vectorDatabases/{vdb['id']}/search/",
                               json={"query": query, "k": 3, "mode": mode, **body})
        assert response.status_code == 200, response.text
        assert response.json()["mode"] == mode
        return [hit["documentName"] for hit in response.json()["data"]]

    for query, expected in [("What does error E-4173 mean?", "errors/e-4173.md"),
                            ("E-4712", "errors/e-4712.md"),
                            ("Which bracket is PN-55012-C?", "parts/pn-55012-c.md")]:
        assert top(query, "keyword")[0] == expected, query
        assert top(query, "hybrid")[0] == expected, query
    paraphrase = "Can I keep holidays I did not take for later?"
    assert top(paraphrase, "dense")[0] == "hr/leave.md"
    assert top(paraphrase, "hybrid")[0] == "hr/leave.md"
    # Only stop words: no keyword hits, and hybrid is the dense ranking.
    assert top("what is it?", "keyword") == []
    assert top("what is it?", "hybrid") == top("what is it?", "dense")
    # A filter applies to the keyword ranking too.
    only_b = {"$documentName": {"$in": ["errors/e-4172.md", "parts/pn-55012-b.md"]}}
    assert top("Is PN-55012-C or PN-55012-B the bracket?", "keyword", filter=only_b) == [
        "parts/pn-55012-b.md"]
    # A question with a code asks the keyword index for its codes only.
    assert top("Which bracket is PN-55012-C?", "keyword", filter=only_b) == []
    assert set(top("pump pressure", "hybrid", filter=only_b)) <= set(only_b[
        "$documentName"]["$in"])
    # The keyword ranking's weight: by default as the question calls for, or as asked.
    code = "What does error E-4173 mean?"
    assert top(code, "hybrid", keywordWeight=0) == top(code, "dense")
    assert top("pump pressure", "hybrid", keywordWeight=5)[0] == top("pump pressure", "keyword")[0]
    refusals: list[tuple[dict[str, Any], list[str]]] = [
        ({"mode": "sparse"}, ["body", "mode"]), ({"keywordWeight": 11}, ["body", "keywordWeight"])]
    for bad, loc in refusals:
        response = client.post(f"{API}/vectorDatabases/{vdb['id']}/search/",
                               json={"query": "x", **bad})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == loc
