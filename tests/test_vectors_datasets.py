"""Datasets: what uploads accept and refuse (in-process and through a real server),
tenancy, and a server without the embeddings extra."""

from __future__ import annotations

import codecs
import io
import random
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from genai_jobs.vectors.datasets import (
    TEXT_CHECK_BYTES,
    Ingested,
    Limits,
    ingest_file,
    read_upload,
)
from genai_jobs.vectors.records import (
    BadFile,
    DatasetRejected,
    DocumentKind,
    FilesRejected,
    MetadataType,
)
from genai_jobs.vectors.spooled import SpooledFile, whole
from tests.support import REPO, Server, start_server, submit, wait_for_status
from tests.vectors_support import API, BUILD, DATASETS, make_pdf, spooled, upload, zip_of

LIMITS = Limits(max_file_bytes=100_000, max_files=20, max_total_bytes=300_000,
                max_expansion_ratio=50, max_rows=5)
# What DataRobot's SDK reads of a dataset, and our one extension.
DATASET_KEYS = {"datasetId", "versionId", "name", "categories", "creationDate", "createdBy",
                "dataPersisted", "isDataEngineEligible", "isLatestVersion", "isSnapshot",
                "processingState", "datasetSize", "rowCount", "metadataColumns",
                "skippedFiles"}
PDF = make_pdf(["A page about lighthouses."])


def refusals(files: list[tuple[str, bytes]], limits: Limits = LIMITS,
             skip: bool = False) -> list[BadFile]:
    """What refused the upload: the one refusal of the whole, or every bad file."""
    with pytest.raises((DatasetRejected, FilesRejected)) as caught:
        read_upload(files, limits, skip_bad_files=skip)
    error = caught.value
    if isinstance(error, FilesRejected):
        return list(error.files)
    assert isinstance(error, DatasetRejected)
    return [error.bad_file]


def rejected(files: list[tuple[str, bytes]], limits: Limits = LIMITS) -> BadFile:
    [refusal] = refusals(files, limits)
    return refusal


# -- in-process: types, names, archives ---------------------------------------------


def test_each_supported_type_is_detected_and_kept_byte_for_byte() -> None:
    files = [("a.txt", b"plain"), ("b.MD", b"# title"), ("c.htm", b"<p>x</p>"), ("d.pdf", PDF)]
    documents = read_upload(files, LIMITS).documents
    assert [(d.name, d.kind, d.content) for d in documents] == [
        ("a.txt", DocumentKind.TEXT, b"plain"), ("b.MD", DocumentKind.MARKDOWN, b"# title"),
        ("c.htm", DocumentKind.HTML, b"<p>x</p>"), ("d.pdf", DocumentKind.PDF, PDF)]


def test_an_archive_is_expanded_into_documents_named_after_it() -> None:
    archive = zip_of({"guide/intro.md": b"# Intro", "notes.txt": b"notes",
                      "__MACOSX/._notes.txt": b"\x00\x01", "guide/.DS_Store": b"\x00"})
    documents = read_upload([("docs.zip", archive)], LIMITS).documents
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
    # zipfile stops at the declared size, and the checksum of what it read then fails.
    assert (error.kind, error.name) == ("corrupt_archive", "liar.zip/data.txt")


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
    assert (error.kind, error.name) == (kind, f"bundle.zip/{entry}")


# -- bad files: every one reported at once, or skipped when asked -------------------

MIXED = {"guide/intro.md": b"# Intro", "empty.txt": b"", "notes.txt": b"notes",
         "latin1.txt": "café".encode("latin-1"), "scan.pdf": b"not a pdf at all",
         "inner.zip": zip_of({"x.txt": b"x"}), "photo.png": b"\x89PNG",
         # Incompressible, so that the archive is no zip bomb: refused by its declared size.
         "big.md": random.Random(0).randbytes(100_001)}
MIXED_BAD = [("empty.txt", "empty_file"), ("latin1.txt", "not_text"), ("scan.pdf", "corrupt_pdf"),
             ("inner.zip", "nested_archive"), ("photo.png", "unsupported_type"),
             ("big.md", "file_too_large")]


def test_every_bad_file_of_an_upload_is_reported_at_once() -> None:
    with pytest.raises(FilesRejected) as caught:
        ingest_file("docs.zip", zip_of(MIXED), LIMITS)
    # Named as their documents would be: by their path in the uploaded zip.
    assert [(file.name, file.kind) for file in caught.value.files] == MIXED_BAD


def test_bad_files_are_skipped_when_asked_and_listed_with_their_reasons() -> None:
    found = ingest_file("docs.zip", zip_of(MIXED), LIMITS, skip_bad_files=True)
    assert [document.name for document in found.documents] == ["guide/intro.md", "notes.txt"]
    assert [(file.name, file.kind) for file in found.skipped_files] == MIXED_BAD
    assert found.skipped_files[0].reason == "the file is empty"
    assert found.skipped_files[1].reason == "not UTF-8 text (byte 3)"


def test_an_upload_whose_every_file_is_bad_is_refused_even_when_skipping() -> None:
    files = [("a.txt", b""), ("b.md", b"  \n"), ("c.zip", zip_of({"d.txt": b""}))]
    assert [(file.name, file.kind) for file in refusals(files, skip=True)] == [
        ("a.txt", "empty_file"), ("b.md", "empty_file"), ("c.zip/d.txt", "empty_file")]
    with pytest.raises(FilesRejected):
        ingest_file("empty.txt", b"", LIMITS, skip_bad_files=True)


def test_the_first_file_of_a_name_is_kept_and_later_ones_are_bad() -> None:
    found = read_upload([("a.txt", b"one"), ("b.txt", b"b"), ("a.txt", b"two")], LIMITS,
                        skip_bad_files=True)
    assert [(document.name, document.content) for document in found.documents] == [
        ("a.txt", b"one"), ("b.txt", b"b")]
    assert [(file.name, file.kind) for file in found.skipped_files] == [
        ("a.txt", "duplicate_name")]


def _symlink_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("good.txt", "good")
        link = zipfile.ZipInfo("link.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return out.getvalue()


@pytest.mark.parametrize(("files", "kind"), [
    ([("bundle.zip", zip_of({"good.txt": b"good", "empty.txt": b"",
                             "../../outside.txt": b"x"}))], "unsafe_name"),
    ([("links.zip", _symlink_zip())], "unsafe_name"),
    ([("good.txt", b"good"), ("bomb.zip", zip_of({"zeros.txt": b"0" * 5_000_000}))],
     "zip_bomb"),
    ([("good.txt", b"good"), ("broken.zip", b"PK\x03\x04 not really")], "corrupt_archive"),
    ([(f"f{n}.txt", b"text") for n in range(21)], "too_many_files"),
    ([(f"f{n}.txt", b"x" * 90_000) for n in range(4)], "dataset_too_large"),
])
def test_attacks_and_limits_refuse_the_whole_upload_even_when_skipping(
        files: list[tuple[str, bytes]], kind: str) -> None:
    # Not a bad file among good ones: nothing of the upload is kept, and only it is named.
    [refusal] = refusals(files, skip=True)
    assert refusal.kind == kind


def test_one_uploaded_zip_names_its_documents_by_their_path_in_it() -> None:
    archive = zip_of({"guide/intro.md": b"# Intro", "notes.txt": b"notes"})
    found = ingest_file("docs.zip", archive, LIMITS)
    assert [(d.name, d.kind) for d in found.documents] == [
        ("guide/intro.md", DocumentKind.MARKDOWN), ("notes.txt", DocumentKind.TEXT)]
    assert found.metadata_columns == []


def csv_of(*rows: str) -> bytes:
    return "\n".join(rows).encode()


def ingested_csv(*rows: str) -> Ingested:
    return ingest_file("rows.csv", csv_of(*rows), LIMITS)


def test_a_csv_is_a_document_per_row_named_by_its_path_with_typed_metadata() -> None:
    found = ingested_csv(
        "document,document_file_path,pages,reviewed,published,team",
        'First text.,a/one.txt,3,true,2024-01-31,"science, space"',
        "Second text.,a/two.txt,2.5,FALSE,2023-12-01T10:00:00,",
    )
    assert [(d.name, d.content, d.kind) for d in found.documents] == [
        ("a/one.txt", b"First text.", DocumentKind.TEXT),
        ("a/two.txt", b"Second text.", DocumentKind.TEXT)]
    assert [(c.name, c.type) for c in found.metadata_columns] == [
        ("pages", MetadataType.NUMBER), ("reviewed", MetadataType.BOOLEAN),
        ("published", MetadataType.DATE), ("team", MetadataType.TEXT)]
    assert found.documents[0].metadata == {"pages": 3, "reviewed": True,
                                           "published": "2024-01-31", "team": "science, space"}
    # An empty cell is no value, not an empty one.
    assert found.documents[1].metadata == {"pages": 2.5, "reviewed": False,
                                           "published": "2023-12-01T10:00:00"}


def test_a_csv_without_paths_names_its_rows() -> None:
    found = ingested_csv("document", "alpha", "beta")
    assert [d.name for d in found.documents] == ["rows.csv/row 2", "rows.csv/row 3"]


@pytest.mark.parametrize(("rows", "kind", "words"), [
    (("text,path", "a,b"), "missing_column", "'document'"),
    (("document,team,team", "a,b,c"), "invalid_csv", "two columns"),
    (("document,team", "a,b,c"), "invalid_csv", "row 2 has 3 fields"),
    (("document",), "empty_file", "no rows"),
    (("document", "x", "  "), "empty_file", "row 3"),
    (("document,document_file_path", "a,same.txt", "b,same.txt"), "duplicate_name", "same.txt"),
    (("document,document_file_path", "a,../up.txt"), "unsafe_name", "row 2"),
    (("document", *"abcdef"), "too_many_files", "6 rows"),
    (("document," + ",".join(f"c{n}" for n in range(51)), "a" + ",x" * 51),
     "too_many_columns", "51 metadata columns"),
])
def test_a_bad_csv_is_refused_naming_what_is_wrong(rows: tuple[str, ...], kind: str,
                                                   words: str) -> None:
    with pytest.raises(DatasetRejected) as caught:
        ingested_csv(*rows)
    assert caught.value.kind == kind
    assert words in str(caught.value)


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


def test_an_upload_answers_202_and_its_dataset_has_datarobot_s_shape(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    response = upload(a, [("guide.md", b"# Guide"), ("site/i.html", b"<p>hi</p>")],
                      name="handbook")
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"statusId", "catalogId", "catalogVersionId"}
    assert response.headers["location"].endswith(f"/api/v2/status/{body['statusId']}/")
    dataset = a.get(f"{DATASETS}/{body['catalogId']}/").json()
    assert set(dataset) == DATASET_KEYS
    assert (dataset["datasetId"], dataset["versionId"]) == (body["catalogId"],
                                                          body["catalogVersionId"])
    assert (dataset["name"], dataset["rowCount"], dataset["datasetSize"]) == ("handbook", 2, 16)
    assert (dataset["processingState"], dataset["metadataColumns"]) == ("COMPLETED", [])
    assert dataset["creationDate"].endswith("Z")
    ingest = a.get(f"{API}/jobs/{body['statusId']}/").json()
    assert (ingest["status"], ingest["jobType"]) == ("COMPLETED", "dataset.ingest")
    assert ingest["result"]["rowCount"] == 2


def test_datasets_are_listed_newest_first_with_pagination(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    ids = [upload(a, [("n.txt", f"note {n}".encode())]).json()["catalogId"] for n in range(3)]
    page = a.get(f"{DATASETS}/", params={"limit": 2}).json()
    assert [item["datasetId"] for item in page["data"]] == ids[::-1][:2]
    assert page["count"] == 2
    assert page["next"]
    assert page["previous"] is None
    assert page["totalCount"] >= 3


def test_another_tenant_s_dataset_is_404_like_an_unknown_one(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, b = tenants
    dataset_id = upload(a, [("secret.txt", b"secret")]).json()["catalogId"]
    for response in (b.get(f"{DATASETS}/{dataset_id}/"),
                     b.delete(f"{DATASETS}/{dataset_id}/"),
                     b.post(f"{API}/vectorDatabases/",
                            json={"datasetId": dataset_id, "name": "stolen"})):
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": f"dataset {dataset_id} not found"}
    assert dataset_id not in {item["datasetId"] for item in
                              b.get(f"{DATASETS}/").json()["data"]}


def test_a_deleted_dataset_is_gone(tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    dataset_id = upload(a, [("old.txt", b"old")]).json()["catalogId"]
    assert a.delete(f"{DATASETS}/{dataset_id}/").status_code == 204
    assert a.get(f"{DATASETS}/{dataset_id}/").status_code == 404


@pytest.mark.parametrize(("name", "content", "kind", "named"), [
    ("report.pdf", PDF[:200], "corrupt_pdf", "report.pdf"),
    ("bomb.zip", zip_of({"zeros.txt": b"0" * 2_000_000}), "zip_bomb", "bomb.zip"),
    ("photo.jpg", b"\xff\xd8\xff", "unsupported_type", "photo.jpg"),
    ("empty.txt", b"", "empty_file", "empty.txt"),
    # A member of the uploaded zip is named by its path in it, as its document would be.
    ("evil.zip", zip_of({"../../etc/cron.d/evil.txt": b"text"}), "unsafe_name",
     "../../etc/cron.d/evil.txt"),
    ("rows.csv", b"text\nno document column\n", "missing_column", "rows.csv"),
    ("nothing.zip", zip_of({}), "empty_file", "nothing.zip"),
])
def test_each_bad_file_is_a_422_naming_it_and_nothing_is_stored(
        tenants: tuple[httpx.Client, httpx.Client], name: str, content: bytes,
        kind: str, named: str) -> None:
    _, b = tenants
    before = b.get(f"{DATASETS}/").json()["totalCount"]
    jobs_before = b.get(f"{API}/jobs/").json()["totalCount"]
    response = upload(b, [(name, content)])
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert set(item) == {"loc", "msg", "type"}
    assert (item["loc"], item["type"]) == (["body", "file"], kind)
    assert item["msg"].startswith(f"{named}: ")
    assert b.get(f"{DATASETS}/").json()["totalCount"] == before
    assert b.get(f"{API}/jobs/").json()["totalCount"] == jobs_before


def test_an_upload_without_a_file_or_not_multipart_is_a_422(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    no_file = a.post(f"{DATASETS}/fromFile/", data={"name": "nothing"})
    as_json = a.post(f"{DATASETS}/fromFile/", json={"file": "a.txt"})
    two_files = a.post(f"{DATASETS}/fromFile/", files=[("file", ("a.txt", b"a")),
                                                       ("file", ("b.txt", b"b"))])
    for response in (no_file, as_json, two_files):
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][0] == "body"


def test_an_upload_may_be_larger_than_the_limit_of_other_requests(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    over_max_body = b"words " * 200_000  # 1.2 MB; GENAI_JOBS_MAX_BODY_BYTES is 1 MB
    response = upload(a, [("big.txt", over_max_body)])
    assert response.status_code == 202, response.text
    dataset = a.get(f"{DATASETS}/{response.json()['catalogId']}/").json()
    assert dataset["datasetSize"] == len(over_max_body)
    job = a.post("/api/v2/genai/jobs/", json={"jobType": "diagnostics.sleep",
                                               "payload": {"pad": "x" * 1_100_000}})
    assert job.status_code == 413


def test_an_upload_over_its_own_limit_is_a_413_and_stores_nothing(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--workers", "0",
                           env={"GENAI_JOBS_DATASET_MAX_UPLOAD_BYTES": "200000"})
    try:
        with running.client() as client:
            declared = upload(client, [("huge.txt", b"x" * 250_000)])
            streamed = client.post(f"{DATASETS}/fromFile/", content=chunks_of_multipart(),
                                   headers={"Content-Type": "multipart/form-data; boundary=b"})
            for response in (declared, streamed):
                assert response.status_code == 413
                assert response.json() == {"detail": "request body too large"}
            assert client.get(f"{DATASETS}/").json()["totalCount"] == 0
            assert upload(client, [("small.txt", b"x" * 150_000)]).status_code == 202
    finally:
        running.service.close()


def chunks_of_multipart() -> Iterator[bytes]:
    """A multipart body sent without a Content-Length, so only counting can stop it."""
    yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="s.txt"\r\n'
           b"Content-Type: text/plain\r\n\r\n")
    for _ in range(30):
        yield b"y" * 10_000
    yield b"\r\n--b--\r\n"


def test_vector_database_requests_are_checked_and_nothing_is_stored(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    dataset_id = upload(a, [("a.txt", b"words")]).json()["catalogId"]
    chunking = ["body", "chunkingParameters"]
    cases: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"chunkingParameters": {"chunkSize": 257}}, [*chunking, "chunkSize"]),
        ({"chunkingParameters": {"chunkSize": "128"}}, [*chunking, "chunkSize"]),
        ({"chunkingParameters": {"chunkSize": 128.0}}, [*chunking, "chunkSize"]),
        ({"chunkingParameters": {"customChunking": "false"}}, [*chunking, "customChunking"]),
        ({"chunkingParameters": {"chunkOverlapPercentage": 51}},
         [*chunking, "chunkOverlapPercentage"]),
        ({"chunkingParameters": {"embeddingModel": "gpt-embeddings"}},
         [*chunking, "embeddingModel"]),
        ({"chunkingParameters": {"chunkingMethod": "semantic"}}, [*chunking, "chunkingMethod"]),
        ({"chunkingParameters": {"customChunking": True}}, [*chunking, "customChunking"]),
        ({"chunkingParameters": {"isSeparatorRegex": True}}, [*chunking, "isSeparatorRegex"]),
        ({"chunkingParameters": {"separators": ["x" * 21]}}, [*chunking, "separators", 0]),
        ({"chunkingParameters": {"embeddingValidationId": "abc"}},
         [*chunking, "embeddingValidationId"]),
        ({"name": ""}, ["body", "name"]),
        ({"externalVectorDatabaseConnection": {"type": "pinecone"}},
         ["body", "externalVectorDatabaseConnection"]),
    ]
    for fields, loc in cases:
        body = {"datasetId": dataset_id, "name": "vdb", **fields}
        response = a.post(f"{API}/vectorDatabases/", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
    unknown_parent = a.post(f"{API}/vectorDatabases/", json={
        "datasetId": dataset_id, "parentVectorDatabaseId": str(uuid4())})
    assert unknown_parent.status_code == 404
    listed = a.get(f"{API}/vectorDatabases/")
    assert listed.json()["totalCount"] == 0
    assert a.get(f"{API}/vectorDatabases/", params={"sort": "colour"}).status_code == 422


def test_the_supported_routes_are_not_read_as_vector_database_ids(
        tenants: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = tenants
    for name in ("supportedEmbeddings", "supportedTextChunkings", "supportedRetrievalSettings"):
        assert a.get(f"{API}/vectorDatabases/{name}/").status_code == 200, name


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
        dataset_id = upload(client, [("a.txt", b"some words"),
                                     ("b.pdf", PDF)]).json()["catalogId"]
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


# -- a large file read from its upload's temporary file ------------------------------

def _ingested_or_refused(name: str, content: bytes | SpooledFile,
                         limits: Limits) -> tuple[Any, ...]:
    try:
        found = ingest_file(name, content, limits)
    except DatasetRejected as exc:
        return ("refused", exc.bad_file)
    except FilesRejected as exc:
        return ("refused", *exc.files)
    return ("taken", [(document.name, document.kind, whole(document.content),
                       dict(document.metadata)) for document in found.documents],
            found.metadata_columns)


SLICE = TEXT_CHECK_BYTES
SPOOLED_CASES = [
    ("plain.txt", b"word " * (SLICE // 2)),
    ("bom.md", codecs.BOM_UTF8 + "é".encode() * SLICE),
    # A two-byte character cut by the slice boundary is one character, not an error.
    ("cut.txt", b"a" * (SLICE - 1) + "é".encode() + b"b" * 10),
    ("cut-with-bom.txt", codecs.BOM_UTF8 + b"a" * (SLICE - 4) + "€".encode() + b"tail"),
    ("bad-late.txt", b"a" * (SLICE + 12_345) + b"\xff" + b"a" * 10),
    ("bad-at-boundary.txt", b"a" * (SLICE - 1) + b"\xe2\x82" + b"x"),
    ("bad-with-bom.txt", codecs.BOM_UTF8 + b"a" * (2 * SLICE) + b"\xc3(" + b"z"),
    ("nul-late.txt", b"a" * (SLICE + 7) + b"\x00"),
    ("blank.txt", b" \n\t" * SLICE),
    ("only-bom.txt", codecs.BOM_UTF8),
    ("manual.pdf", PDF + b"%" + b"padding " * (SLICE // 4)),
    ("not-a.pdf", b"plain text, no header " * 60_000),
    ("archive.zip", zip_of({"a.txt": b"alpha " * 300_000, "b/c.md": b"# gamma"})),
    ("broken.zip", b"PK\x03\x04" + b"\x00" * (SLICE + 10)),
    ("rows.csv", b"path,text,score\n" + b"".join(
        b"doc-%d.txt,line %d of many,%d\n" % (row, row, row) for row in range(4))),
    ("picture.png", b"\x89PNG" + b"\x00" * SLICE),
]


@pytest.mark.parametrize(("name", "content"), SPOOLED_CASES,
                         ids=[name for name, _ in SPOOLED_CASES])
def test_a_file_read_from_its_temporary_file_is_taken_or_refused_as_in_memory(
        name: str, content: bytes) -> None:
    limits = Limits(max_file_bytes=10 * SLICE, max_files=20, max_total_bytes=20 * SLICE,
                    max_expansion_ratio=50, max_rows=5)
    in_memory = _ingested_or_refused(name, content, limits)
    from_file = _ingested_or_refused(name, spooled(content), limits)
    assert from_file == in_memory
    if name.startswith("bad-"):  # the position counts from after a byte-order mark
        with pytest.raises(UnicodeDecodeError) as caught:
            content.removeprefix(codecs.BOM_UTF8).decode()
        assert in_memory[1].reason == f"not UTF-8 text (byte {caught.value.start})"


def test_a_spooled_file_reads_in_slices_and_lets_go_of_its_descriptor() -> None:
    content = random.Random(3).randbytes(3 * SLICE + 17)
    file = spooled(content)
    assert len(file) == len(content)
    assert b"".join(file.slices(SLICE)) == content
    assert [len(piece) for piece in file.slices(SLICE)] == [SLICE] * 3 + [17]
    assert file.read(len(content) - 5, 100) == content[-5:]
    with file.opened() as opened:
        assert opened.read() == content
    file.close()
    file.close()  # twice is harmless
