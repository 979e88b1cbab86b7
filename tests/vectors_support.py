"""Documents made by the tests (PDFs written by hand), and helpers for the vectors tests."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import httpx

from genai_jobs.vectors.spooled import SpooledFile
from tests.support import poll_until

API = "/api/v2/genai"
DATASETS = "/api/v2/datasets"
BUILD = "vectorDatabase.build"

# A small corpus with one fact per passage, for searches with known answers.
SOLAR = (
    "Notes on the solar system.\n\n"
    "Mercury is the closest planet to the Sun and has almost no atmosphere. "
    "Venus is wrapped in thick clouds of sulfuric acid and is the hottest planet. "
    "Jupiter is the largest planet in the solar system, a gas giant more than eleven times "
    "as wide as the Earth. "
    "Saturn is famous for its bright rings made of ice and rock. "
    "Neptune has the fastest winds measured on any planet. "
)
BREAD = (
    "# Sourdough bread\n\n"
    "Feed the starter the evening before with equal weights of flour and water.\n\n"
    "## Shaping\n\nFold the dough every half hour during the bulk fermentation.\n\n"
    "## Baking\n\nBake the loaf in a covered pot at 230 degrees Celsius for forty minutes, "
    "then uncover it for the crust.\n"
)
ANIMALS = (
    "<html><head><title>Polar animals</title>"
    "<script>var planet = 'Jupiter is the largest planet';</script>"
    "<style>p { color: red }</style></head><body>"
    "<h1>Polar animals</h1>"
    "<p>Polar bears hunt seals from the sea ice of the Arctic.</p>"
    "<p>The emperor penguin breeds during the harsh Antarctic winter, and the male keeps the "
    "egg warm on his feet for two months.</p>"
    "<p>Arctic foxes change the colour of their fur with the seasons.</p>"
    "</body></html>"
)
MANUAL_PAGES = [
    "Router manual. To reset the router, hold the reset button on the back for ten seconds "
    "until the lights blink.",
    "Warranty. The warranty covers manufacturing defects for two years from the date of "
    "purchase.",
]
QUESTIONS = [
    ("Which planet is the biggest?", "solar.txt", "Jupiter is the largest planet", None),
    ("How hot should the oven be for sourdough?", "recipes/bread.md", "230 degrees", None),
    ("When do emperor penguins breed?", "animals.html", "emperor penguin breeds", None),
    ("How long does the warranty last?", "manual.pdf", "two years", 2),
    ("How do I reset my router?", "manual.pdf", "hold the reset button", 1),
]


def make_pdf(pages: list[str]) -> bytes:
    """A minimal PDF with one text page per string (Helvetica, lines of ~80 characters)."""
    count = len(pages)
    font = 3 + 2 * count
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()]
    for number, text in enumerate(pages):
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       f"<< /Font << /F1 {font} 0 R >> >> /Contents {4 + 2 * number} 0 R >>"
                       .encode())
        stream = _text_operators(text)
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def _text_operators(text: str) -> bytes:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) > 80:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    lines.append(line)
    escaped = [item.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
               for item in lines]
    shown = " ".join(f"({item}) Tj T*" for item in escaped)
    return f"BT /F1 11 Tf 72 720 Td 14 TL {shown} ET".encode("latin-1")


def corpus_files() -> list[tuple[str, bytes]]:
    return [("solar.txt", SOLAR.encode()), ("recipes/bread.md", BREAD.encode()),
            ("animals.html", ANIMALS.encode()), ("manual.pdf", make_pdf(MANUAL_PAGES))]


def filler_text(sentences: int) -> str:
    """Many distinct sentences, for builds long enough to stop half-way."""
    subjects = ["The river", "A violin", "The market", "Our garden", "The tram", "A glacier"]
    verbs = ["carries", "hides", "welcomes", "measures", "paints", "remembers"]
    things = ["old maps", "quiet songs", "bright lanterns", "spare keys", "red apples"]
    return " ".join(f"{subjects[n % 6]} {verbs[(n // 6) % 6]} {things[(n // 36) % 5]} "
                    f"number {n}." for n in range(sentences))


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def upload(client: httpx.Client, files: list[tuple[str, bytes]],
           name: str | None = None) -> httpx.Response:
    """DataRobot's upload of one file; several are sent as one zip of them."""
    file_name, content = files[0] if len(files) == 1 else ("dataset.zip", zip_of(dict(files)))
    return client.post(f"{DATASETS}/fromFile/",
                       files={"file": (file_name, content, "application/octet-stream")},
                       data={"name": name} if name else None)


def create_dataset(client: httpx.Client, files: list[tuple[str, bytes]],
                   name: str | None = None) -> str:
    response = upload(client, files, name)
    assert response.status_code == 202, response.text
    return str(response.json()["catalogId"])


def create_vdb(client: httpx.Client, dataset_id: str, size: int, overlap_percentage: int = 0,
               separators: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """A vector database in DataRobot's body; no separators (the default here): token
    windows, whose chunks the tests can count."""
    response = client.post(f"{API}/vectorDatabases/", json={
        "datasetId": dataset_id, "name": fields.pop("name", "test"),
        "chunkingParameters": {"chunkSize": size,
                               "chunkOverlapPercentage": overlap_percentage,
                               "separators": separators or [],
                               **fields.pop("chunking", {})}, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def follow_build(client: httpx.Client, job_id: str, timeout: float = 90,
                 until: set[str] | None = None) -> list[dict[str, Any]]:
    """Every change of the build job seen by long-polls, until it ends (or reaches `until`)."""
    seen: list[dict[str, Any]] = []
    wanted = until or {"COMPLETED", "ERROR", "ABORTED", "EXPIRED"}

    def ended() -> bool:
        job: dict[str, Any] = client.get(f"{API}/jobs/{job_id}/",
                                         params={"waitSeconds": 2}).json()
        seen.append(job)
        return job["status"] in wanted

    poll_until(ended, timeout, interval=0, what=f"build {job_id} in {wanted}")
    return seen


def wait_for_progress(client: httpx.Client, job_id: str, words: str,
                      timeout: float = 90) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"{API}/jobs/{job_id}/").json()
        assert job["status"] in ("INITIALIZED", "RUNNING"), job
        return job if words in job["progressMessage"] else None

    return poll_until(reached, timeout, interval=0.05, what=f"{words!r} in {job_id}'s progress")


def sqlite_rows(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows read straight from the server's SQLite file (read-only)."""
    path = Path(database_url.removeprefix("sqlite:///"))
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def spooled(content: bytes) -> SpooledFile:
    """`content` as a large upload reaches the ingest: in a temporary file of its own."""
    with tempfile.TemporaryFile() as file:
        file.write(content)
        file.flush()
        return SpooledFile.of(file)  # a descriptor of its own: the bytes outlive `file`
