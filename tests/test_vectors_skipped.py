"""What is left out, and why, through a real server on SQLite and on PostgreSQL: the bad
files of an upload (every one reported, or skipped when asked) and the documents a build
finds no text in, through the API, the command line and DataRobot's SDK."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pg_support import scratch_store
from tests.support import Server, run_cli, running_server
from tests.vectors_support import (
    API,
    DATASETS,
    SOLAR,
    create_dataset,
    create_vdb,
    follow_build,
    make_pdf,
    zip_of,
)

pytestmark = pytest.mark.slow

GOOD = {"guide/intro.md": b"# Intro\n\nThe lighthouse keeper lights the lamp at dusk.",
        "notes.txt": b"Tide tables are printed every spring."}
BAD = {"empty.txt": b"", "latin1.txt": "café".encode("latin-1"), "scan.pdf": b"not a pdf",
       "old.zip": zip_of({"x.txt": b"x"})}
# What the server says of each bad file: (name, type), in the archive's order.
BAD_TYPES = [("empty.txt", "empty_file"), ("latin1.txt", "not_text"),
             ("scan.pdf", "corrupt_pdf"), ("old.zip", "nested_archive")]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kind = str(request.param)
    with scratch_store(kind) as url, running_server(tmp_path_factory.mktemp(f"skipped-{kind}"),
                                                    "--workers", "1",
                                                    database_url=url) as running:
        yield running


@pytest.fixture(scope="module")
def client(api: Server) -> Iterator[httpx.Client]:
    with api.client(api.make_token("skipper"), timeout=120) as http:
        yield http


def post_upload(client: httpx.Client, file_name: str, content: bytes,
                **fields: str) -> httpx.Response:
    return client.post(f"{DATASETS}/fromFile/", data=fields or None,
                       files={"file": (file_name, content, "application/octet-stream")})


def stored(client: httpx.Client) -> tuple[int, int]:
    """(datasets, jobs) of the caller: what a refused upload must leave unchanged."""
    return (client.get(f"{DATASETS}/").json()["totalCount"],
            client.get(f"{API}/jobs/").json()["totalCount"])


def cli_env(api: Server, client: httpx.Client) -> dict[str, str]:
    return {"GENAI_JOBS_URL": api.url,
            "GENAI_JOBS_TOKEN": client.headers["authorization"].split()[1]}


# -- uploads with bad files -----------------------------------------------------------


def test_an_upload_with_bad_files_is_one_422_naming_every_one_and_stores_nothing(
        client: httpx.Client) -> None:
    before = stored(client)
    response = post_upload(client, "docs.zip", zip_of({**GOOD, **BAD}))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [(item["loc"], item["type"]) for item in detail] == [
        (["body", "file"], kind) for _, kind in BAD_TYPES]
    assert [item["msg"].split(": ")[0] for item in detail] == [name for name, _ in BAD_TYPES]
    assert all(set(item) == {"loc", "msg", "type"} for item in detail)
    assert stored(client) == before


def test_skipping_bad_files_keeps_the_good_ones_and_lists_the_bad_ones_with_reasons(
        client: httpx.Client) -> None:
    response = post_upload(client, "docs.zip", zip_of({**GOOD, **BAD}), skipBadFiles="true",
                           name="half good")
    assert response.status_code == 202, response.text
    body = response.json()
    dataset = client.get(f"{DATASETS}/{body['catalogId']}/").json()
    assert (dataset["name"], dataset["rowCount"]) == ("half good", len(GOOD))
    assert dataset["datasetSize"] == sum(len(content) for content in GOOD.values())
    skipped = dataset["skippedFiles"]
    assert [(item["name"], item["type"]) for item in skipped] == BAD_TYPES
    assert skipped[0]["reason"] == "the file is empty"
    assert skipped[3]["reason"] == "archives inside archives are not supported"
    listed = client.get(f"{DATASETS}/").json()["data"]
    assert next(item for item in listed
                if item["datasetId"] == body["catalogId"])["skippedFiles"] == skipped
    ingest = client.get(f"{API}/jobs/{body['statusId']}/").json()
    assert ingest["result"]["skippedFiles"] == [name for name, _ in BAD_TYPES]
    assert ingest["result"]["rowCount"] == len(GOOD)


def test_an_upload_without_bad_files_lists_none_skipped(client: httpx.Client) -> None:
    response = post_upload(client, "docs.zip", zip_of(GOOD), skipBadFiles="true")
    assert response.status_code == 202, response.text
    dataset = client.get(f"{DATASETS}/{response.json()['catalogId']}/").json()
    assert (dataset["rowCount"], dataset["skippedFiles"]) == (len(GOOD), [])


def test_an_upload_whose_every_file_is_bad_is_refused_even_when_skipping(
        client: httpx.Client) -> None:
    before = stored(client)
    for name, content in (("docs.zip", zip_of(BAD)), ("empty.txt", b"")):
        response = post_upload(client, name, content, skipBadFiles="true")
        assert response.status_code == 422, response.text
        kinds = [item["type"] for item in response.json()["detail"]]
        assert kinds == ([kind for _, kind in BAD_TYPES] if name == "docs.zip"
                         else ["empty_file"])
    assert stored(client) == before


@pytest.mark.parametrize(("entries", "kind"), [
    ({**GOOD, "empty.txt": b"", "../../etc/cron.d/evil.txt": b"text"}, "unsafe_name"),
    ({**GOOD, "zeros.txt": b"0" * 5_000_000}, "zip_bomb"),
])
def test_an_attack_refuses_the_whole_upload_even_when_skipping(
        client: httpx.Client, entries: dict[str, bytes], kind: str) -> None:
    before = stored(client)
    response = post_upload(client, "docs.zip", zip_of(entries), skipBadFiles="true")
    assert response.status_code == 422, response.text
    # The attack alone is named: no file of such an upload is worth keeping.
    assert [item["type"] for item in response.json()["detail"]] == [kind]
    assert stored(client) == before


def test_skip_bad_files_is_a_boolean(client: httpx.Client) -> None:
    response = post_upload(client, "a.txt", b"words", skipBadFiles="maybe")
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert (item["loc"], item["type"]) == (["body", "skipBadFiles"], "bool_parsing")
    assert post_upload(client, "a.txt", b"words", skipBadFiles="false").status_code == 202


def test_an_unknown_form_field_is_refused_not_ignored(client: httpx.Client) -> None:
    before = client.get("/api/v2/datasets/").json()["totalCount"]
    response = post_upload(client, "a.txt", b"words", skipbadfiles="true")  # misspelt
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert (item["loc"], item["type"]) == (["body", "skipbadfiles"], "extra_forbidden")
    assert "skipBadFiles" in item["msg"]
    assert client.get("/api/v2/datasets/").json()["totalCount"] == before


def test_the_cli_lists_every_bad_file_and_uploads_the_others_when_asked(
        api: Server, client: httpx.Client, tmp_path: Path) -> None:
    folder = tmp_path / "handbook"
    for name, content in {**GOOD, **BAD}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    env = cli_env(api, client)
    before = stored(client)
    refused = run_cli("dataset", "upload", str(folder), env=env, check=False)
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout == ""
    lines = refused.stderr.splitlines()
    # The folder's files, in the zip the command makes, sorted by path.
    assert lines[:-1] == [
        "bad file handbook/empty.txt: the file is empty",
        "bad file handbook/latin1.txt: not UTF-8 text (byte 3)",
        "bad file handbook/old.zip: archives inside archives are not supported",
        "bad file handbook/scan.pdf: not a PDF: no %PDF- header"]
    assert lines[-1] == ("error: 4 bad file(s); nothing was uploaded: add --skip-bad-files "
                         "to upload the other 2 without them")
    assert stored(client) == before

    uploaded = run_cli("dataset", "upload", str(folder), "--skip-bad-files", env=env)
    dataset_id = uploaded.stdout.strip()
    assert "2 document(s)" in uploaded.stderr
    assert "skipped handbook/empty.txt: the file is empty" in uploaded.stderr
    assert "skipped handbook/scan.pdf: not a PDF: no %PDF- header" in uploaded.stderr
    listed = json.loads(run_cli("dataset", "list", "--json", env=env).stdout)
    mine: dict[str, Any] = next(item for item in listed if item["datasetId"] == dataset_id)
    assert [item["name"] for item in mine["skippedFiles"]] == [
        "handbook/empty.txt", "handbook/latin1.txt", "handbook/old.zip", "handbook/scan.pdf"]

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "empty.md").write_bytes(b"")
    nothing = run_cli("dataset", "upload", str(only_bad), "--skip-bad-files", env=env,
                      check=False)
    assert nothing.returncode == 1
    assert nothing.stderr.splitlines() == ["bad file bad/empty.md: the file is empty",
                                           "error: every file is bad (1): nothing to upload"]


def test_datarobot_s_sdk_reads_a_dataset_with_skipped_files(
        api: Server, client: httpx.Client, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    import datarobot as dr
    from datarobot.client import set_client

    for name in [name for name in os.environ
                 if name.startswith("DATAROBOT_") or name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    response = post_upload(client, "docs.zip", zip_of({**GOOD, **BAD}), skipBadFiles="true")
    previous = set_client(None)  # type: ignore[arg-type]
    try:
        dr.Client(endpoint=f"{api.url}/api/v2", token=cli_env(api, client)["GENAI_JOBS_TOKEN"],
                  max_retries=0)
        dataset = dr.Dataset.get(response.json()["catalogId"])
        with pytest.raises(dr.errors.ClientError) as refused:
            dr.Dataset.create_from_file(filelike=_named_bytes("docs.zip",
                                                              zip_of({**GOOD, **BAD})))
    finally:
        set_client(previous)  # type: ignore[arg-type]
    assert (dataset.row_count, dataset.processing_state) == (len(GOOD), "COMPLETED")
    assert refused.value.status_code == 422
    assert [item["type"] for item in refused.value.json["detail"]] == [
        kind for _, kind in BAD_TYPES]


def _named_bytes(name: str, content: bytes) -> io.BytesIO:
    """An in-memory file with a name, as the SDK sends a `filelike` (its name is the
    upload's file name)."""
    data = io.BytesIO(content)
    data.name = name
    return data


# -- documents a build finds no text in ------------------------------------------------

# Accepted by the upload (a PDF with a page, an HTML file with characters), but without
# a word to index: a scanned PDF, a page of scripts.
TEXTLESS = {"scan.pdf": make_pdf([""]),
            "app.html": b"<html><head><script>var planet = 'Jupiter';</script></head>"
                        b"<body><div id='root'></div></body></html>"}
REASONS = {"scan.pdf": "no text in its pages (a scanned PDF holds pictures of text, and no "
                       "OCR is done here)",
           "app.html": "no visible text (only markup, scripts or styles)",
           "blank.html": "no visible text (only markup, scripts or styles)"}


def built(client: httpx.Client, dataset_id: str, **fields: Any) -> dict[str, Any]:
    vdb = create_vdb(client, dataset_id, 64, **fields)
    assert vdb["skippedDocuments"] == []  # not known before the build has read them
    final = follow_build(client, vdb["buildStatusId"], timeout=120)[-1]
    assert final["status"] == "COMPLETED", final
    vdb = client.get(f"{API}/vectorDatabases/{vdb['id']}/").json()
    vdb["result"] = final["result"]
    return dict(vdb)


def check_textless(skipped: list[dict[str, Any]], names: list[str]) -> None:
    assert skipped == [{"name": name, "reason": REASONS[name]} for name in names]


def test_a_build_shows_the_documents_it_skipped_and_why_on_the_vector_database(
        client: httpx.Client) -> None:
    dataset_id = create_dataset(client, [("solar.txt", SOLAR.encode()), *TEXTLESS.items()])
    vdb = built(client, dataset_id)
    assert vdb["executionStatus"] == "COMPLETED"
    check_textless(vdb["skippedDocuments"], ["scan.pdf", "app.html"])
    assert vdb["result"]["skippedDocuments"] == ["scan.pdf", "app.html"]
    listed = client.get(f"{API}/vectorDatabases/").json()["data"]
    assert next(item for item in listed
                if item["id"] == vdb["id"])["skippedDocuments"] == vdb["skippedDocuments"]
    # A new version leaves out what its parent left out, and what its own dataset adds.
    more = create_dataset(client, [("faq.md", b"# FAQ\n\nThe tide turns twice a day."),
                                   ("blank.html", b"<p> </p><style>p {}</style>")])
    version = built(client, more, parentVectorDatabaseId=vdb["id"])
    check_textless(version["skippedDocuments"], ["scan.pdf", "app.html", "blank.html"])
    assert version["result"]["skippedDocuments"] == ["blank.html"]


def test_vdb_create_wait_and_get_name_the_skipped_documents(api: Server,
                                                           client: httpx.Client) -> None:
    dataset_id = create_dataset(client, [("solar.txt", SOLAR.encode()), *TEXTLESS.items()])
    env = cli_env(api, client)
    created = run_cli("vdb", "create", "--dataset", dataset_id, "--wait", "--timeout", "120",
                      env=env, timeout=150)
    vdb_id, status = created.stdout.splitlines()
    assert status.endswith(" COMPLETED")
    expected = [f"skipped {name}: {REASONS[name]}" for name in ("scan.pdf", "app.html")]
    assert created.stderr.splitlines()[-2:] == expected
    got = run_cli("vdb", "get", vdb_id, env=env)
    assert " COMPLETED " in got.stdout
    assert got.stderr.splitlines() == expected
    as_json = json.loads(run_cli("vdb", "get", vdb_id, "--json", env=env).stdout)
    assert [item["name"] for item in as_json["skippedDocuments"]] == ["scan.pdf", "app.html"]


def test_datarobot_s_sdk_reads_a_vector_database_with_skipped_documents(
        api: Server, client: httpx.Client, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from datarobot.client import set_client
    from datarobot.models.genai.vector_database import VectorDatabase

    dataset_id = create_dataset(client, [("solar.txt", SOLAR.encode()), *TEXTLESS.items()])
    vdb = built(client, dataset_id)
    for name in [name for name in os.environ
                 if name.startswith("DATAROBOT_") or name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    previous = set_client(None)  # type: ignore[arg-type]
    try:
        import datarobot as dr

        dr.Client(endpoint=f"{api.url}/api/v2", token=cli_env(api, client)["GENAI_JOBS_TOKEN"],
                  max_retries=0)
        read = VectorDatabase.get(vdb["id"])
    finally:
        set_client(previous)  # type: ignore[arg-type]
    assert (read.execution_status, read.chunks_count) == ("COMPLETED", vdb["chunksCount"])
