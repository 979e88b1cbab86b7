"""Uploaded files made into a dataset's documents: types, limits, archives, CSVs, names.

Everything a client could get wrong is found here, before anything is stored,
naming the file as its document would be named (a member of the uploaded zip
by its path in it). Two kinds of refusal:

- a bad file (SKIPPABLE: its type, its content, its size, its name taken by
  another) is one file among others: every bad file of an upload is found and
  reported at once (FilesRejected), and an upload that asks for it keeps the
  good files and records the bad ones as skipped;
- anything else (an unsafe name, a zip bomb, an unreadable archive, too many
  files or bytes in all, a CSV that cannot be read) refuses the whole upload at
  once (DatasetRejected): it comes from an attack or a broken upload, and no
  file of it is worth keeping.

Nothing is ever written to a disk: the documents' bytes go to the store (a large
file straight from the temporary file its upload was spooled to, a slice at a
time: vectors/spooled.py), so no name can point outside a data folder; unsafe
names are refused all the same, since they only come from mistakes or attacks.
Archives are read member by member with a cap on what each may expand to, so a
zip bomb costs no more memory than the limits allow; a bad member is judged by
its name and declared size before it is decompressed.
"""

from __future__ import annotations

import codecs
import functools
import re
import stat
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from genai_jobs.vectors.csvdata import read_csv
from genai_jobs.vectors.records import (
    BadFile,
    DatasetRejected,
    Document,
    DocumentKind,
    FilesRejected,
    MetadataColumn,
)
from genai_jobs.vectors.settings import VectorSettings
from genai_jobs.vectors.spooled import Content, head, opened, slices, whole

KINDS_BY_SUFFIX = {
    ".txt": DocumentKind.TEXT,
    ".text": DocumentKind.TEXT,
    ".md": DocumentKind.MARKDOWN,
    ".markdown": DocumentKind.MARKDOWN,
    ".html": DocumentKind.HTML,
    ".htm": DocumentKind.HTML,
    ".pdf": DocumentKind.PDF,
}
ARCHIVE_SUFFIX = ".zip"
CSV_SUFFIX = ".csv"
SUPPORTED = ", ".join(sorted([*KINDS_BY_SUFFIX, ARCHIVE_SUFFIX]))
SUPPORTED_UPLOADS = ", ".join(sorted([*KINDS_BY_SUFFIX, ARCHIVE_SUFFIX, CSV_SUFFIX]))
# How much of a member is decompressed at a time while its size is checked.
READ_BLOCK_BYTES = 1024 * 1024
# A PDF's header may follow a little junk; readers look this far for it.
PDF_HEADER_WINDOW = 1024
# Entries that archivers add beside the files (macOS resource forks, Finder data).
_ARCHIVE_JUNK = re.compile(r"(^|/)(__MACOSX|\.DS_Store)(/|$)")
_DRIVE = re.compile(r"^[A-Za-z]:")
# The refusals that concern one file alone: a bad file among good ones, which an
# upload may ask to skip. Every other refusal type refuses the whole upload.
SKIPPABLE = frozenset({
    "unsupported_type", "empty_file", "not_text", "corrupt_pdf", "encrypted_pdf",
    "encrypted_archive", "nested_archive", "file_too_large", "duplicate_name",
})


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int
    max_files: int
    max_total_bytes: int
    max_expansion_ratio: float
    max_rows: int

    @classmethod
    def from_settings(cls, settings: VectorSettings) -> Limits:
        return cls(settings.dataset_max_file_bytes, settings.dataset_max_files,
                   settings.dataset_max_total_bytes, settings.dataset_max_expansion_ratio,
                   settings.dataset_max_rows)


@dataclass(frozen=True, slots=True)
class Ingested:
    documents: list[Document]
    metadata_columns: list[MetadataColumn]
    skipped_files: list[BadFile] = field(default_factory=list)


def ingest_file(raw_name: str, content: Content, limits: Limits,
                skip_bad_files: bool = False) -> Ingested:
    """The documents of one uploaded file (DataRobot's `fromFile`): a document, a zip of
    documents (named by their path in it), or a CSV with a document per row. Bad files
    are refused all together (FilesRejected), or with `skip_bad_files` left out and
    listed, unless no good one is left. A CSV is one file: its errors refuse it."""
    name = safe_name(raw_name, raw_name)
    lowered = name.lower()
    if lowered.endswith(CSV_SUFFIX):
        if len(content) > limits.max_total_bytes:
            raise DatasetRejected(name, f"{len(content):,} bytes is over the limit of "
                                        f"{limits.max_total_bytes:,}", "dataset_too_large")
        found = read_csv(name, decoded_text(name, whole(content)), limits.max_rows,
                         limits.max_file_bytes, safe_name)
        _check_unique(found.documents)
        return Ingested(found.documents, found.metadata_columns)
    intake = _Intake()
    if lowered.endswith(ARCHIVE_SUFFIX):
        expand_archive(name, content, limits, intake, prefix="")
        if not intake.documents and not intake.bad:
            raise DatasetRejected(name, "the archive holds no documents", "empty_file")
    elif PurePosixPath(lowered).suffix not in KINDS_BY_SUFFIX:
        raise DatasetRejected(name, f"unsupported file type; supported: {SUPPORTED_UPLOADS}",
                              "unsupported_type")
    else:
        intake.take(functools.partial(check_document, name, content, limits))
    return intake.outcome(limits, name, skip_bad_files)


def read_upload(files: Sequence[tuple[str, bytes]], limits: Limits,
                skip_bad_files: bool = False) -> Ingested:
    """The documents of uploaded `(file name, bytes)` pairs, archives expanded (their
    members named `<archive>/<path in it>`)."""
    intake = _Intake()
    for raw_name, content in files:
        name = safe_name(raw_name, raw_name)
        if name.lower().endswith(ARCHIVE_SUFFIX):
            expand_archive(name, content, limits, intake)
        else:
            intake.take(functools.partial(check_document, name, content, limits))
        _check_totals(intake.documents, limits, name)
    return intake.outcome(limits, files[-1][0] if files else "", skip_bad_files)


@dataclass
class _Intake:
    """An upload's documents as they are read, and its bad files: every one is found
    before the upload is refused or its bad files are skipped."""

    documents: list[Document] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)

    def take(self, read: Callable[[], Document]) -> None:
        """Keep the document `read` returns, or note why it is bad; a refusal that is not
        about one file alone refuses the upload at once."""
        try:
            self.documents.append(read())
        except DatasetRejected as exc:
            if exc.kind not in SKIPPABLE:
                raise
            self.bad.append(exc.bad_file)

    def outcome(self, limits: Limits, last: str, skip_bad_files: bool) -> Ingested:
        self._set_aside_duplicates()
        if self.bad and not (skip_bad_files and self.documents):
            raise FilesRejected(self.bad)
        _check_totals(self.documents, limits, last)
        return Ingested(self.documents, [], self.bad)

    def _set_aside_duplicates(self) -> None:
        """The first document of a name is kept; later ones are bad files."""
        seen: set[str] = set()
        kept: list[Document] = []
        for document in self.documents:
            if document.name in seen:
                self.bad.append(BadFile(document.name, "duplicate_name",
                                        "an earlier file of the upload has this name"))
            else:
                seen.add(document.name)
                kept.append(document)
        self.documents = kept


def safe_name(raw: str, shown: str) -> str:
    """`raw` as a relative POSIX path with no way out of its folder; else rejected."""
    if not raw or any(ord(char) < 32 for char in raw) or "\\" in raw:
        raise DatasetRejected(shown, "the name is empty or has control characters or "
                                     "backslashes", "unsafe_name")
    if raw.startswith("/") or _DRIVE.match(raw):
        raise DatasetRejected(shown, "absolute paths are not allowed", "unsafe_name")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise DatasetRejected(shown, "the path leaves its folder ('..')", "unsafe_name")
    return "/".join(parts)


def kind_of(name: str) -> DocumentKind:
    kind = KINDS_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())
    if kind is None:
        raise DatasetRejected(name, f"unsupported file type; supported: {SUPPORTED}",
                              "unsupported_type")
    return kind


# How much of a text file `check_text` decodes at a time (a millisecond's work).
TEXT_CHECK_BYTES = 1 << 20

def check_document(name: str, content: Content, limits: Limits) -> Document:
    kind = kind_of(name)
    if not content:
        raise DatasetRejected(name, "the file is empty", "empty_file")
    if len(content) > limits.max_file_bytes:
        raise DatasetRejected(name, f"{len(content):,} bytes is over the limit of "
                                    f"{limits.max_file_bytes:,} per file", "file_too_large")
    if kind is DocumentKind.PDF:
        check_pdf(name, content)
    else:
        check_text(name, content)
    return Document(name, kind, content)


def decoded_text(name: str, content: bytes) -> str:
    """The file's text: UTF-8 (a byte-order mark dropped), without NUL bytes."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetRejected(name, f"not UTF-8 text (byte {exc.start})", "not_text") from exc
    if "\x00" in text:
        raise DatasetRejected(name, "not text: it contains NUL bytes", "not_text")
    return text


def check_text(name: str, content: Content) -> None:
    """What `decoded_text` refuses, and a file of white space only, checked a slice at a
    time: decoding 160 MB at once held the interpreter for a third of a second, and
    every status poll the API answered meanwhile waited (bench/hostile.py uploads).
    Byte positions in errors count from after a byte-order mark, as `decoded_text`'s."""
    bom = len(codecs.BOM_UTF8) if head(content, len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    has_text = False
    offset = 0  # where the slice begins in the file
    for piece in slices(content, TEXT_CHECK_BYTES):
        data, begins = (piece[bom:], bom) if offset == 0 else (piece, offset)
        offset += len(piece)
        pending = len(decoder.getstate()[0])  # a character cut by the last slice
        try:
            text = decoder.decode(data, final=offset >= len(content))
        except UnicodeDecodeError as exc:
            byte = begins - pending + exc.start - bom
            raise DatasetRejected(name, f"not UTF-8 text (byte {byte})", "not_text") from exc
        if "\x00" in text:
            raise DatasetRejected(name, "not text: it contains NUL bytes", "not_text")
        has_text = has_text or bool(text.strip())
    if not has_text:
        raise DatasetRejected(name, "the file has no text (only white space)", "empty_file")


def check_pdf(name: str, content: Content) -> None:
    """The header always; with pypdf installed (the embeddings extra), that it opens too."""
    if b"%PDF-" not in head(content, PDF_HEADER_WINDOW):
        raise DatasetRejected(name, "not a PDF: no %PDF- header", "corrupt_pdf")
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:  # the build will parse it, and name it if it is broken
        return
    try:
        with warnings.catch_warnings(), opened(content) as file:
            warnings.simplefilter("ignore")  # pypdf warns about what it can repair
            reader = PdfReader(file)
            if reader.is_encrypted:
                raise DatasetRejected(name, "the PDF is encrypted", "encrypted_pdf")
            pages = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError) as exc:
        raise DatasetRejected(name, f"corrupt PDF: {_first_line(exc)}", "corrupt_pdf") from exc
    if pages == 0:
        raise DatasetRejected(name, "the PDF has no pages", "empty_file")


def expand_archive(name: str, content: Content, limits: Limits, intake: _Intake,
                   prefix: str | None = None) -> None:
    """Read the archive's documents into `intake`, named `<prefix>/<path in the archive>`
    (`prefix` None: the archive's own name; "": the path alone)."""
    with opened(content) as file:
        try:
            archive = zipfile.ZipFile(file)
            members = [info for info in archive.infolist()
                       if not info.is_dir() and not _ARCHIVE_JUNK.search(info.filename)]
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
            raise DatasetRejected(name, f"not a readable zip archive: {_first_line(exc)}",
                                  "corrupt_archive") from exc
        _check_declared_sizes(name, len(content), members, limits)
        with archive:
            for info in members:
                intake.take(functools.partial(_read_member, archive, info, limits,
                                              name if prefix is None else prefix))


def _check_declared_sizes(name: str, size: int, members: list[zipfile.ZipInfo],
                          limits: Limits) -> None:
    if len(members) > limits.max_files:
        raise DatasetRejected(name, f"{len(members):,} files is over the limit of "
                                    f"{limits.max_files:,}", "too_many_files")
    declared = sum(info.file_size for info in members)
    if declared > limits.max_expansion_ratio * max(size, 1):
        raise DatasetRejected(name, f"expands to {declared:,} bytes, more than "
                                    f"{limits.max_expansion_ratio:g} times its size: "
                                    "refused as a zip bomb", "zip_bomb")
    if declared > limits.max_total_bytes:
        raise DatasetRejected(name, f"expands to {declared:,} bytes, over the limit of "
                                    f"{limits.max_total_bytes:,}", "dataset_too_large")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits,
                 prefix: str) -> Document:
    shown = f"{prefix}/{info.filename}" if prefix else info.filename
    member = safe_name(info.filename, shown)
    name = f"{prefix}/{member}" if prefix else member
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DatasetRejected(shown, "symbolic links are not allowed", "unsafe_name")
    if info.flag_bits & 0x1:
        raise DatasetRejected(name, "the entry is encrypted", "encrypted_archive")
    if name.lower().endswith(ARCHIVE_SUFFIX):
        raise DatasetRejected(name, "archives inside archives are not supported",
                              "nested_archive")
    kind_of(name)  # an unsupported type is refused before it is decompressed
    if info.file_size > limits.max_file_bytes:
        raise DatasetRejected(name, f"{info.file_size:,} bytes is over the limit of "
                                    f"{limits.max_file_bytes:,} per file", "file_too_large")
    return check_document(name, _decompress(archive, info, name, limits), limits)


def _decompress(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str,
                limits: Limits) -> bytes:
    """The member's bytes, read a block at a time: never more than the limit, whatever
    its header claims (zipfile also stops at the declared size and checks the CRC)."""
    cap = min(limits.max_file_bytes, info.file_size)
    parts: list[bytes] = []
    seen = 0
    try:
        with archive.open(info) as member:
            while block := member.read(READ_BLOCK_BYTES):
                seen += len(block)
                if seen > cap:
                    raise DatasetRejected(shown, "expands past its declared size or the "
                                                 "per-file limit", "zip_bomb")
                parts.append(block)
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        raise DatasetRejected(shown, f"cannot be decompressed: {_first_line(exc)}",
                              "corrupt_archive") from exc
    return b"".join(parts)


def _check_totals(documents: list[Document], limits: Limits, last: str) -> None:
    if len(documents) > limits.max_files:
        raise DatasetRejected(last, f"the dataset has over {limits.max_files:,} files",
                              "too_many_files")
    total = sum(len(document.content) for document in documents)
    if total > limits.max_total_bytes:
        raise DatasetRejected(last, f"the dataset's {total:,} bytes are over the limit of "
                                    f"{limits.max_total_bytes:,}", "dataset_too_large")


def _check_unique(documents: Sequence[Document]) -> None:
    seen: set[str] = set()
    for document in documents:
        if document.name in seen:
            raise DatasetRejected(document.name, "two files have this name", "duplicate_name")
        seen.add(document.name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
