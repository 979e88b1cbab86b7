"""DataRobot's own SDK (`datarobot==3.20.0`, unpatched) through the whole documents →
vector database flow, on SQLite and on PostgreSQL, with a real model build.

The SDK decides whether this works: every call below is the SDK's own, reading our
answers with its own required-key checks. Our HTTP client is used only to look at
what the SDK cannot show (a build job's result, the classic route's status codes).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import uuid4

import datarobot as dr
import httpx
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from datarobot.client import set_client
from datarobot.errors import AsyncProcessUnsuccessfulError, ClientError, ServerError
from datarobot.models.genai.playground import Playground
from datarobot.models.genai.user_limits import UserLimits
from datarobot.models.genai.vector_database import ChunkingParameters, VectorDatabase
from datarobot.rest import RESTClientObject
from datarobot.utils.waiters import wait_for_async_resolution

from tests.pg_support import scratch_store
from tests.support import Server, poll_until, running_server, submit, wait_for_status
from tests.vectors_support import BREAD, SOLAR, corpus_files, make_pdf, zip_of

pytestmark = [
    pytest.mark.slow,
    # The SDK opens an uploaded file_path and never closes it (its docstring says so);
    # the garbage collector's warning about that file is the SDK's, not ours.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <_io\.FileIO:pytest.PytestUnraisableExceptionWarning"),
]

API = "/api/v2/genai"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BUILD_SECONDS = 180.0
# The SDK sleeps 5 s between its status polls: an upload answered in one poll is faster.
ONE_POLL = 5.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with scratch_store(request.param) as url, running_server(
            tmp_path_factory.mktemp(f"sdk-{request.param}"), "--workers", "1",
            database_url=url) as running:
        yield running


@pytest.fixture(scope="module")
def token(api: Server) -> str:
    return api.make_token(f"dr-{uuid4().hex[:8]}")


@pytest.fixture
def sdk(api: Server, token: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Iterator[RESTClientObject]:
    """DataRobot's client on our server: no config file, no DATAROBOT_* settings, no proxy."""
    for name in [name for name in __import__("os").environ
                 if name.startswith("DATAROBOT_") or name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    previous = set_client(None)  # type: ignore[arg-type]
    try:
        yield dr.Client(endpoint=f"{api.url}/api/v2", token=token, max_retries=0)
    finally:
        set_client(previous)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def http(api: Server, token: str) -> Iterator[httpx.Client]:
    with api.client(token, timeout=60) as client:
        yield client


def write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def built(vdb_id: str) -> VectorDatabase:
    """VectorDatabase.get polled until its build ends, as a DataRobot script does."""
    def done() -> VectorDatabase | None:
        vdb = VectorDatabase.get(vdb_id)
        return vdb if vdb.execution_status in ("COMPLETED", "ERROR") else None

    return poll_until(done, BUILD_SECONDS, interval=0.2, what=f"build of {vdb_id}")


def handbook_csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["document", "document_file_path", "team", "pages", "reviewed", "date"])
    writer.writerow([SOLAR, "astronomy/solar.txt", "science", "3", "true", "2024-01-31"])
    writer.writerow([BREAD, "kitchen/bread.md", "kitchen", "12", "false", "2023-11-02"])
    writer.writerow(["Penguins breed in the Antarctic winter.", "zoo/penguins.txt", "",
                     "1", "true", "2022-06-15"])
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def corpus(api: Server, token: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A zip dataset, a CSV dataset and a vector database built from the zip by the SDK,
    made once per store."""
    folder = tmp_path_factory.mktemp("corpus")
    previous = set_client(None)  # type: ignore[arg-type]
    try:
        dr.Client(endpoint=f"{api.url}/api/v2", token=token, max_retries=0)
        zipped: dr.Dataset = dr.Dataset.create_from_file(
            file_path=write(folder / "handbook.zip", zip_of(dict(corpus_files()))))
        tabular = dr.Dataset.upload(write(folder / "handbook.csv", handbook_csv()))
        vdb = VectorDatabase.create(zipped.id, ChunkingParameters(
            embedding_model=MODEL, chunking_method="recursive", chunk_size=256,
            chunk_overlap_percentage=10, separators=["\n\n", "\n", " ", ""]),
            use_case="use-case-1", name="handbook")
        return {"zip": zipped, "csv": tabular, "created": vdb, "vdb": built(vdb.id)}
    finally:
        set_client(previous)  # type: ignore[arg-type]


# -- what the server can build --------------------------------------------------------


def test_the_supported_embeddings_chunkings_and_retrieval_settings_are_read(
        sdk: RESTClientObject) -> None:
    embeddings = VectorDatabase.get_supported_embeddings()
    assert embeddings.default_embedding_model == MODEL
    (model,) = embeddings.embedding_models
    assert (model.embedding_model, model.max_sequence_length) == (MODEL, 256)
    chunkings = VectorDatabase.get_supported_text_chunkings()
    (config,) = chunkings.text_chunking_configs
    (method,) = config.methods
    assert (config.embedding_model, config.default_method, method.chunking_method) == (
        MODEL, "recursive", "recursive")
    bounds = {parameter.name: (parameter.min, parameter.max)
              for parameter in method.chunking_parameters}
    assert bounds["chunk_size"] == (1, 256)
    assert bounds["chunk_overlap_percentage"] == (0, 50)
    (setting,) = VectorDatabase.get_supported_retrieval_settings().settings
    assert (setting.minimum, setting.maximum) == (1, 100)


# -- datasets -------------------------------------------------------------------------


def test_an_upload_is_ingested_before_the_sdk_s_first_poll(
        sdk: RESTClientObject, tmp_path: Path) -> None:
    path = write(tmp_path / "notes.zip", zip_of(dict(corpus_files())))
    started = time.monotonic()
    dataset: dr.Dataset = dr.Dataset.create_from_file(file_path=path)
    assert time.monotonic() - started < ONE_POLL  # the SDK never slept
    assert dataset.processing_state == "COMPLETED"
    assert (dataset.name, dataset.row_count) == ("notes.zip", len(corpus_files()))
    assert dataset.size == sum(len(content) for _, content in corpus_files())
    assert dr.Dataset.get(dataset.id).version_id == dataset.version_id


def test_a_dataset_is_renamed_and_categorised(sdk: RESTClientObject, tmp_path: Path) -> None:
    dataset: dr.Dataset = dr.Dataset.create_from_file(
        file_path=write(tmp_path / "a.md", b"# A page"), categories=["TRAINING"])
    assert dr.Dataset.get(dataset.id).categories == ["TRAINING"]
    dataset.modify(name="pages", categories=["PREDICTION", "TRAINING"])
    again = dr.Dataset.get(dataset.id)
    assert (again.name, again.categories) == ("pages", ["PREDICTION", "TRAINING"])
    with pytest.raises(ClientError) as refused:
        dataset.modify(categories=["SOMETHING"])
    assert refused.value.status_code == 422


def test_one_document_is_a_dataset_and_datasets_list_and_delete(
        sdk: RESTClientObject, tmp_path: Path) -> None:
    dataset = dr.Dataset.upload(write(tmp_path / "solar.txt", SOLAR.encode()))
    assert (dataset.name, dataset.row_count) == ("solar.txt", 1)
    assert dataset.id in {found.id for found in dr.Dataset.list()}
    dr.Dataset.delete(dataset.id)
    with pytest.raises(ClientError) as gone:
        dr.Dataset.get(dataset.id)
    assert gone.value.status_code == 404


def test_a_csv_is_a_document_per_row_with_typed_metadata_columns(
        corpus: dict[str, Any], http: httpx.Client) -> None:
    dataset = corpus["csv"]
    assert dataset.row_count == 3
    body = http.get(f"/api/v2/datasets/{dataset.id}/").json()
    assert body["metadataColumns"] == [
        {"name": "team", "type": "text"}, {"name": "pages", "type": "number"},
        {"name": "reviewed", "type": "boolean"}, {"name": "date", "type": "date"}]


def test_the_classic_status_route_sends_the_sdk_on_to_the_dataset(
        sdk: RESTClientObject, http: httpx.Client, tmp_path: Path) -> None:
    response = http.post("/api/v2/datasets/fromFile/",
                         files={"file": ("a.txt", b"A short note.", "text/plain")})
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    assert "/api/v2/status/" in location
    status = http.get(location, follow_redirects=False)
    assert status.status_code == 303
    assert status.headers["location"].endswith(
        f"/api/v2/datasets/{response.json()['catalogId']}/")
    assert status.json()["status"] == "COMPLETED"
    assert wait_for_async_resolution(sdk, location, max_wait=10) == status.headers["location"]


def test_a_bad_file_is_a_422_naming_it_and_nothing_is_stored(
        sdk: RESTClientObject, tmp_path: Path) -> None:
    before = len(dr.Dataset.list())
    for name, content in [("a.exe", b"MZ"), ("rows.csv", b"text,other\nx,y\n"),
                          ("empty.txt", b"")]:
        with pytest.raises(ClientError) as refused:
            dr.Dataset.create_from_file(file_path=write(tmp_path / name, content))
        assert refused.value.status_code == 422
        assert name in str(refused.value)
    assert len(dr.Dataset.list()) == before


# -- vector databases -------------------------------------------------------------------


def test_a_vector_database_is_created_in_datarobot_s_shape_and_built(
        corpus: dict[str, Any], http: httpx.Client) -> None:
    created, vdb = corpus["created"], corpus["vdb"]
    assert created.execution_status in ("NEW", "RUNNING")
    assert created.error_message is None
    assert vdb.execution_status == "COMPLETED", vdb.error_message
    assert vdb.error_message is None
    assert (vdb.name, vdb.use_case_id, vdb.dataset_id) == ("handbook", "use-case-1",
                                                           corpus["zip"].id)
    assert (vdb.embedding_model, vdb.chunking_method, vdb.chunk_size,
            vdb.chunk_overlap_percentage) == (MODEL, "recursive", 256, 10)
    assert vdb.separators == ["\n\n", "\n", " ", ""]
    assert (vdb.version, vdb.parent_id, vdb.family_id) == (1, None, vdb.id)
    assert vdb.added_dataset_ids == [corpus["zip"].id]
    assert vdb.dataset_name == corpus["zip"].name
    assert vdb.chunks_count > 4
    assert vdb.size > vdb.chunks_count * 384 * 4
    job_id = http.get(f"{API}/vectorDatabases/{vdb.id}/").json()["buildStatusId"]
    assert http.get(f"{API}/jobs/{job_id}/").json()["result"]["chunkCount"] == vdb.chunks_count


def test_the_sdk_s_waiter_follows_a_build_to_its_vector_database(
        sdk: RESTClientObject, corpus: dict[str, Any], http: httpx.Client) -> None:
    job_id = http.get(f"{API}/vectorDatabases/{corpus['vdb'].id}/").json()["buildStatusId"]
    location = wait_for_async_resolution(sdk, f"status/{job_id}/", max_wait=10)
    assert location.endswith(f"{API}/vectorDatabases/{corpus['vdb'].id}/")


def test_vector_databases_are_listed_with_their_filters_applied(
        sdk: RESTClientObject, corpus: dict[str, Any]) -> None:
    other = VectorDatabase.create(corpus["csv"].id, use_case="use-case-2",
                                  name="Kitchen notes")
    try:
        names = {vdb.name for vdb in VectorDatabase.list()}
        assert {"handbook", "Kitchen notes"} <= names
        assert [vdb.name for vdb in VectorDatabase.list(search="KITCHEN")] == ["Kitchen notes"]
        assert {vdb.id for vdb in VectorDatabase.list(use_case="use-case-2")} == {other.id}
        completed = {vdb.id for vdb in VectorDatabase.list(completed_only=True)}
        assert corpus["vdb"].id in completed
        ordered = [vdb.name for vdb in VectorDatabase.list(sort="name")]
        assert ordered == sorted(ordered)
        assert [vdb.name for vdb in VectorDatabase.list(sort="-name")] == ordered[::-1]
    finally:
        other.delete()
    with pytest.raises(ClientError) as gone:
        VectorDatabase.get(other.id)
    assert gone.value.status_code == 404


def test_a_vector_database_is_renamed(sdk: RESTClientObject, corpus: dict[str, Any]) -> None:
    vdb = VectorDatabase.get(corpus["vdb"].id)
    renamed = vdb.update(name="handbook (renamed)")
    try:
        assert renamed.name == VectorDatabase.get(vdb.id).name == "handbook (renamed)"
        assert renamed.last_update_date >= vdb.last_update_date
    finally:
        vdb.update(name="handbook")


def test_a_new_version_holds_its_parent_s_chunks_without_embedding_them_again(
        sdk: RESTClientObject, corpus: dict[str, Any], http: httpx.Client,
        tmp_path: Path) -> None:
    parent = corpus["vdb"]
    extra = dr.Dataset.upload(write(tmp_path / "extra.txt",
                                    b"Comets are icy bodies that grow tails near the Sun."))
    child = built(VectorDatabase.create(extra.id, parent_vector_database_id=parent.id,
                                        use_case="use-case-1").id)
    assert child.execution_status == "COMPLETED", child.error_message
    assert (child.version, child.parent_id, child.family_id) == (2, parent.id, parent.id)
    assert child.added_dataset_ids == [corpus["zip"].id, extra.id]
    assert (child.chunk_size, child.separators) == (parent.chunk_size, parent.separators)
    job_id = http.get(f"{API}/vectorDatabases/{child.id}/").json()["buildStatusId"]
    result = http.get(f"{API}/jobs/{job_id}/").json()["result"]
    assert result["reusedChunks"] == parent.chunks_count
    assert result["embeddedChunks"] == 1
    assert child.chunks_count == parent.chunks_count + 1
    hits = http.post(f"{API}/vectorDatabases/{child.id}/search/",
                     json={"query": "What grows a tail near the Sun?", "k": 1}).json()["data"]
    assert hits[0]["documentName"] == "extra.txt"


def test_versions_made_at_once_take_distinct_numbers(
        api: Server, token: str, corpus: dict[str, Any], http: httpx.Client) -> None:
    parent = corpus["vdb"]
    body = {"datasetId": corpus["csv"].id, "parentVectorDatabaseId": parent.id}

    def create(_: int) -> dict[str, Any]:
        with api.client(token, timeout=60) as client:
            response = client.post(f"{API}/vectorDatabases/", json=body)
            assert response.status_code == 202, response.text
            made: dict[str, Any] = response.json()
            return made

    with ThreadPoolExecutor(max_workers=4) as pool:
        made = list(pool.map(create, range(4)))
    try:
        versions = sorted(vdb["version"] for vdb in made)
        assert len(set(versions)) == 4
        assert all(vdb["familyId"] == parent.id for vdb in made)
    finally:
        for vdb in made:
            assert http.delete(f"{API}/vectorDatabases/{vdb['id']}/").status_code == 204


def test_the_text_and_embeddings_download_is_a_parquet_file(
        sdk: RESTClientObject, corpus: dict[str, Any], tmp_path: Path) -> None:
    vdb = VectorDatabase.get(corpus["vdb"].id)
    target = tmp_path / "export.parquet"
    vdb.download_text_and_embeddings_asset(file_path=str(target))
    table = pq.read_table(target)
    assert table.num_rows == vdb.chunks_count
    assert {"text", "embedding", "document_file_path"} <= set(table.column_names)
    assert len(table.column("embedding")[0].as_py()) == 384
    assert {"solar.txt", "manual.pdf"} <= set(table.column("document_file_path").to_pylist())


def test_a_csv_vector_database_exports_its_metadata_columns(
        sdk: RESTClientObject, corpus: dict[str, Any], tmp_path: Path) -> None:
    vdb = built(VectorDatabase.create(corpus["csv"].id, use_case="use-case-3").id)
    try:
        assert vdb.metadata_columns == ["team", "pages", "reviewed", "date"]
        vdb.download_text_and_embeddings_asset(file_path=str(tmp_path / "csv.parquet"))
        rows = pq.read_table(tmp_path / "csv.parquet").to_pylist()
        penguins = next(row for row in rows if row["document_file_path"] == "zoo/penguins.txt")
        assert (penguins["team"], penguins["pages"], penguins["reviewed"]) == (None, "1", "true")
    finally:
        vdb.delete()


def test_the_user_limit_counts_the_tenant_s_vector_databases(
        sdk: RESTClientObject, corpus: dict[str, Any]) -> None:
    # The SDK annotates the answer as a bare APIObject; it is a counter.
    count = UserLimits.get_vector_database_count()
    assert count.counter == len(VectorDatabase.list())  # type: ignore[attr-defined]


# -- failures -------------------------------------------------------------------------


@pytest.mark.parametrize(("chunking", "field"), [
    ({"chunk_size": 1000}, "chunkSize"),
    ({"chunking_method": "semantic"}, "chunkingMethod"),
    ({"embedding_model": "intfloat/e5-large-v2"}, "embeddingModel"),
    ({"chunk_overlap_percentage": 90}, "chunkOverlapPercentage"),
])
def test_a_bad_vector_database_request_is_a_422_naming_the_field(
        sdk: RESTClientObject, corpus: dict[str, Any], chunking: dict[str, Any],
        field: str) -> None:
    before = len(VectorDatabase.list())
    parameters = {"embedding_model": MODEL, "chunking_method": "recursive", "chunk_size": 128,
                  "chunk_overlap_percentage": 0, "separators": None, **chunking}
    with pytest.raises(ClientError) as refused:
        VectorDatabase.create(corpus["zip"].id, ChunkingParameters(**parameters),
                              use_case="use-case-1")
    assert refused.value.status_code == 422
    (item,) = refused.value.json["detail"]
    assert item["loc"][-1] == field
    assert len(VectorDatabase.list()) == before


def test_another_tenant_s_dataset_and_vector_database_are_404(
        api: Server, corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    previous = set_client(None)  # type: ignore[arg-type]
    try:
        dr.Client(endpoint=f"{api.url}/api/v2", token=api.make_token("intruder"),
                  max_retries=0)
        for call in (lambda: dr.Dataset.get(corpus["zip"].id),
                     lambda: VectorDatabase.get(corpus["vdb"].id),
                     lambda: VectorDatabase.create(corpus["zip"].id, use_case="x")):
            with pytest.raises(ClientError) as hidden:
                call()
            assert hidden.value.status_code == 404
    finally:
        set_client(previous)  # type: ignore[arg-type]


def test_a_failed_build_makes_the_waiter_raise(
        sdk: RESTClientObject, http: httpx.Client, tmp_path: Path) -> None:
    dataset = dr.Dataset.upload(write(tmp_path / "blank.pdf", make_pdf([""])))  # no text
    vdb = VectorDatabase.create(dataset.id, use_case="use-case-1")
    job_id = http.get(f"{API}/vectorDatabases/{vdb.id}/").json()["buildStatusId"]
    with pytest.raises(AsyncProcessUnsuccessfulError, match="ERROR"):
        wait_for_async_resolution(sdk, f"status/{job_id}/", max_wait=60)
    assert VectorDatabase.get(vdb.id).execution_status == "ERROR"
    assert VectorDatabase.get(vdb.id).error_message


def test_an_expired_job_is_a_410_on_the_classic_route_so_the_waiter_stops(
        sdk: RESTClientObject, http: httpx.Client) -> None:
    job_id = submit(http, "diagnostics.sleep", {"seconds": 30}, expiresIn=1)
    wait_for_status(http, job_id, "EXPIRED", timeout=30)
    started = time.monotonic()
    with pytest.raises(ClientError) as expired:
        wait_for_async_resolution(sdk, f"status/{job_id}/", max_wait=60)
    assert time.monotonic() - started < ONE_POLL
    assert expired.value.status_code == 410
    assert expired.value.json["status"] == "EXPIRED"


def test_what_is_not_served_fails_with_a_501_naming_it(
        sdk: RESTClientObject, corpus: dict[str, Any]) -> None:
    vdb = VectorDatabase.get(corpus["vdb"].id)
    calls: dict[str, Callable[[], object]] = {
        "playgrounds": Playground.list,
        "deploying a vector database": vdb.deploy,
        "vector databases from custom model deployments":
            lambda: VectorDatabase.create_from_custom_model("x", use_case="u",
                                                            validation_id="v"),
        "datasets fromURL": lambda: dr.Dataset.create_from_url("http://127.0.0.1:9/x.csv"),
        "use cases": lambda: dr.UseCase.create(name="a use case"),
    }
    for feature, call in calls.items():
        with pytest.raises(ServerError) as refused:
            call()
        assert refused.value.status_code == 501
        assert feature in str(refused.value)
        assert "not served by genai-jobs" in str(refused.value)
