"""Datasets: what uploads accept and refuse (in-process and through a real server),
tenancy, and a server without the embeddings extra."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genai_jobs.vectors.datasets import Limits, read_upload
from genai_jobs.vectors.records import DatasetRejected, DocumentKind
from tests.support import REPO, Server, start_server, submit, wait_for_status
from tests.vectors_support import API, BUILD, make_pdf, upload, zip_of

LIMITS = Limits(max_file_bytes=100_000, max_files=20, max_total_bytes=300_000,
                max_expansion_ratio=50)
PDF = make_pdf(["A page about lighthouses."])


def rejected(files: list[tuple[str, bytes]], limits: Limits = LIMITS) -> DatasetRejected:
    with pytest.raises(DatasetRejected) as caught:
        read_upload(files, limits)
    return caught.value


# -- in-process: types, names, archives ---------------------------------------------


def test_each_supported_type_is_detected_and_kept_byte_for_byte() -> None:
    files = [("a.txt", b"plain"), ("b.MD", b"# title"), ("c.htm", b"<p>x</p>"), ("d.pdf", PDF)]
    documents = read_upload(files, LIMITS)
    assert [(d.name, d.kind, d.content) for d in documents] == [
        ("a.txt", DocumentKind.TEXT, b"plain"), ("b.MD", DocumentKind.MARKDOWN, b"# title"),
        ("c.htm", DocumentKind.HTML, b"<p>x</p>"), ("d.pdf", DocumentKind.PDF, PDF)]


def test_an_archive_is_expanded_into_documents_named_after_it() -> None:
    archive = zip_of({"guide/intro.md": b"# Intro", "notes.txt": b"notes",
                      "__MACOSX/._notes.txt": b"\x00\x01", "guide/.DS_Store": b"\x00"})
    documents = read_upload([("docs.zip", archive)], LIMITS)
    assert [d.name for d in documents] == ["docs.zip/guide/intro.md", "docs.zip/notes.txt"]


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("image.png", b"\x89PNG\r\n", "unsupported_type"),
    ("empty.txt", b"", "empty_file"),
    ("blank.md", b"  \n\t\n", "empty_file"),
    ("binary.txt", b"abc\x00def", "not_text"),
    ("latin1.txt", "café".encode("latin-1"), "not_text"),
    ("fake.pdf", b"this is not a pdf at all", "corrupt_pdf"),
    ("truncated.pdf", PDF[: len(PDF) // 2], "corrupt_pdf"),
    ("../escape.txt", b"text", "unsafe_name"),
    ("/etc/passwd.txt", b"text", "unsafe_name"),
    ("C:evil.txt", b"text", "unsafe_name"),
    ("dir\\evil.txt", b"text", "unsafe_name"),
    ("broken.zip", b"PK\x03\x04 not really", "corrupt_archive"),
])
def test_a_bad_file_is_refused_naming_it(name: str, content: bytes, kind: str) -> None:
    error = rejected([("fine.txt", b"fine"), (name, content)])
    assert (error.kind, error.name) == (kind, name)
    assert name in str(error)


def test_a_file_over_the_size_limit_is_refused() -> None:
    assert rejected([("big.txt", b"x" * 100_001)]).kind == "file_too_large"


def test_too_many_files_are_refused() -> None:
    files = [(f"f{n}.txt", b"text") for n in range(21)]
    assert rejected(files).kind == "too_many_files"


def test_two_files_with_one_name_are_refused() -> None:
    assert rejected([("a.txt", b"one"), ("a.txt", b"two")]).kind == "duplicate_name"


def test_a_zip_bomb_is_refused_before_it_is_expanded() -> None:
    bomb = zip_of({"zeros.txt": b"0" * 5_000_000})  # ~5 kB expanding 1000-fold
    error = rejected([("bomb.zip", bomb)])
    assert (error.kind, error.name) == ("zip_bomb", "bomb.zip")


def test_an_archive_member_that_lies_about_its_size_is_cut_off() -> None:
    honest = zip_of({"data.txt": b"a" * 1000})
    info_offset = honest.rindex(b"PK\x01\x02")  # the central directory's entry
    # Declare 10 bytes uncompressed in both headers; the real data is 1000.
    lying = bytearray(honest)
    for header, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = lying.index(header, 0 if header == b"PK\x03\x04" else info_offset)
        lying[start + size_at:start + size_at + 4] = (10).to_bytes(4, "little")
    error = rejected([("liar.zip", bytes(lying))])
    assert error.kind in ("corrupt_archive", "zip_bomb")
    assert "liar.zip/data.txt" in str(error)


@pytest.mark.parametrize(("entry", "kind"), [
    ("../../outside.txt", "unsafe_name"),
    ("/absolute.txt", "unsafe_name"),
    ("inner.zip", "nested_archive"),
    ("tool.exe", "unsupported_type"),
    ("empty.md", "empty_file"),
])
def test_a_bad_archive_member_is_refused_naming_archive_and_member(entry: str, kind: str) -> None:
    content = zip_of({"x.txt": b"x"}) if entry.endswith(".zip") else (
        b"" if entry == "empty.md" else b"text")
    archive = zip_of({"good.txt": b"good", entry: content})
    error = rejected([("bundle.zip", archive)])
    assert error.kind == kind
    assert f"bundle.zip/{entry}" in str(error)


def test_a_symbolic_link_in_an_archive_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        link = zipfile.ZipInfo("link.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    assert rejected([("links.zip", out.getvalue())]).kind == "unsafe_name"


# -- through the API ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tenants(server: Server) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with server.client(server.make_token("vectors-a")) as a, \
            server.client(server.make_token("vectors-b")) as b:
        yield a, b


def test_an_upload_answers_201_with_the_dataset_and_its_location(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    response = upload(a, [("guide.md", b"# Guide"), ("site.zip", zip_of({"i.html": b"<p>"
                                                                          b"hi</p>"}))],
                      name="handbook")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "files", "fileCount", "totalSize", "created"}
    assert body["name"] == "handbook"
    assert body["files"] == [{"name": "guide.md", "size": 7, "type": "markdown"},
                             {"name": "site.zip/i.html", "size": 9, "type": "html"}]
    assert (body["fileCount"], body["totalSize"]) == (2, 16)
    assert body["created"].endswith("Z")
    assert response.headers["location"].endswith(f"{API}/datasets/{body['id']}/")
    assert a.get(f"{API}/datasets/{body['id']}/").json() == body


def test_datasets_are_listed_newest_first_with_pagination(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    ids = [upload(a, [("n.txt", f"note {n}".encode())]).json()["id"] for n in range(3)]
    page = a.get(f"{API}/datasets/", params={"limit": 2}).json()
    assert [item["id"] for item in page["data"]] == ids[::-1][:2]
    assert page["count"] == 2
    assert page["next"]
    assert page["previous"] is None
    assert page["totalCount"] >= 3


def test_another_tenant_s_dataset_is_404_like_an_unknown_one(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, b = tenants
    dataset_id = upload(a, [("secret.txt", b"secret")]).json()["id"]
    for response in (b.get(f"{API}/datasets/{dataset_id}/"),
                     b.delete(f"{API}/datasets/{dataset_id}/"),
                     b.post(f"{API}/vectorDatabases/",
                            json={"datasetId": dataset_id, "name": "stolen"})):
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": f"dataset {dataset_id} not found"}
    assert dataset_id not in {item["id"] for item in
                              b.get(f"{API}/datasets/").json()["data"]}


def test_a_deleted_dataset_is_gone(tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    dataset_id = upload(a, [("old.txt", b"old")]).json()["id"]
    assert a.delete(f"{API}/datasets/{dataset_id}/").status_code == 204
    assert a.get(f"{API}/datasets/{dataset_id}/").status_code == 404


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("report.pdf", PDF[:200], "corrupt_pdf"),
    ("bomb.zip", zip_of({"zeros.txt": b"0" * 2_000_000}), "zip_bomb"),
    ("photo.jpg", b"\xff\xd8\xff", "unsupported_type"),
    ("empty.txt", b"", "empty_file"),
    ("evil.zip", zip_of({"../../etc/cron.d/evil.txt": b"text"}), "unsafe_name"),
])
def test_each_bad_file_is_a_422_naming_it_and_nothing_is_stored(
        tenants: tuple[httpx.Client, httpx.Client], name: str, content: bytes,
        kind: str) -> None:
    _, b = tenants
    before = b.get(f"{API}/datasets/").json()["totalCount"]
    response = upload(b, [("fine.txt", b"fine"), (name, content)])
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert set(item) == {"loc", "msg", "type"}
    assert (item["loc"], item["type"]) == (["body", "files"], kind)
    assert item["msg"].startswith(name)
    assert b.get(f"{API}/datasets/").json()["totalCount"] == before


def test_an_upload_without_files_or_not_multipart_is_a_422(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    no_files = a.post(f"{API}/datasets/", data={"name": "nothing"})
    as_json = a.post(f"{API}/datasets/", json={"files": ["a.txt"]})
    for response in (no_files, as_json):
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][0] == "body"


def test_an_upload_may_be_larger_than_the_limit_of_other_requests(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    over_max_body = b"words " * 200_000  # 1.2 MB; GENAI_JOBS_MAX_BODY_BYTES is 1 MB
    response = upload(a, [("big.txt", over_max_body)])
    assert response.status_code == 201, response.text
    assert response.json()["totalSize"] == len(over_max_body)
    job = a.post("/api/v2/genai/jobs/", json={"jobType": "diagnostics.sleep",
                                               "payload": {"pad": "x" * 1_100_000}})
    assert job.status_code == 413


def test_an_upload_over_its_own_limit_is_a_413_and_stores_nothing(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--workers", "0",
                           env={"GENAI_JOBS_DATASET_MAX_UPLOAD_BYTES": "200000"})
    try:
        with running.client() as client:
            declared = upload(client, [("huge.txt", b"x" * 250_000)])
            streamed = client.post(f"{API}/datasets/", content=chunks_of_multipart(),
                                   headers={"Content-Type": "multipart/form-data; boundary=b"})
            for response in (declared, streamed):
                assert response.status_code == 413
                assert response.json() == {"detail": "request body too large"}
            assert client.get(f"{API}/datasets/").json()["totalCount"] == 0
            assert upload(client, [("small.txt", b"x" * 150_000)]).status_code == 201
    finally:
        running.service.close()


def chunks_of_multipart() -> Iterator[bytes]:
    """A multipart body sent without a Content-Length, so only counting can stop it."""
    yield (b'--b\r\nContent-Disposition: form-data; name="files"; filename="s.txt"\r\n'
           b"Content-Type: text/plain\r\n\r\n")
    for _ in range(30):
        yield b"y" * 10_000
    yield b"\r\n--b--\r\n"


def test_vector_database_requests_are_checked(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    dataset_id = upload(a, [("a.txt", b"words")]).json()["id"]
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"chunking": {"chunkSize": 255}}, ["body", "chunking", "chunkSize"]),
        ({"chunking": {"chunkSize": 10, "chunkOverlap": 10}}, ["body", "chunking", "chunkOverlap"]),
        ({"embeddingModel": "gpt-embeddings"}, ["body", "embeddingModel"]),
        ({"name": ""}, ["body", "name"]),
    ]
    for fields, loc in cases:
        body = {"datasetId": dataset_id, "name": "vdb", **fields}
        response = a.post(f"{API}/vectorDatabases/", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
    assert a.get(f"{API}/vectorDatabases/").json()["totalCount"] == 0


# -- a server without the embeddings extra ------------------------------------------


@pytest.fixture(scope="module")
def without_extra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`serve` in a Python where the extra's packages cannot be imported: a sitecustomize
    marks them missing, as on an install without `[embeddings]`."""
    tmp = tmp_path_factory.mktemp("no-extra")
    shadow = tmp / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\nfor name in ('torch', 'sentence_transformers', 'pypdf'):\n"
        "    sys.modules[name] = None\n")
    running = start_server(tmp, env={"PYTHONPATH": f"{shadow}:{REPO}"})
    try:
        yield running
    finally:
        running.service.close()


def test_without_the_extra_the_build_is_listed_unavailable_saying_what_to_install(
        without_extra: Server) -> None:
    with without_extra.client() as client:
        types = {item["name"]: item for item in client.get(f"{API}/jobTypes/").json()["data"]}
    build = types[BUILD]
    assert build["available"] is False
    assert "pip install 'genai-jobs[embeddings]'" in build["unavailableReason"]
    assert "torch" in build["unavailableReason"]
    assert types["diagnostics.sleep"]["available"] is True


def test_without_the_extra_a_build_fails_at_once_saying_what_to_install(
        without_extra: Server, tmp_path: Path) -> None:
    with without_extra.client() as client:
        dataset_id = upload(client, [("a.txt", b"some words"), ("b.pdf", PDF)]).json()["id"]
        vdb = client.post(f"{API}/vectorDatabases/",
                          json={"datasetId": dataset_id, "name": "x"}).json()
        job = wait_for_status(client, vdb["buildStatusId"], "ERROR")
        assert job["attempts"] == 1
        assert "pip install 'genai-jobs[embeddings]'" in job["message"]
        again = client.get(f"{API}/vectorDatabases/{vdb['id']}/").json()
        assert again["executionStatus"] == "ERROR"
        assert "genai-jobs[embeddings]" in again["errorMessage"]
        search = client.post(f"{API}/vectorDatabases/{vdb['id']}/search/", json={"query": "x"})
        assert search.status_code == 409
        # Submitted directly through /jobs/ it fails the same way.
        direct = submit(client, BUILD, {"vectorDatabaseId": vdb["id"]})
        assert "genai-jobs[embeddings]" in wait_for_status(client, direct, "ERROR")["message"]
