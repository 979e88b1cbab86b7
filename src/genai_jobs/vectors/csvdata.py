"""A CSV dataset in DataRobot's layout: one document per row, with metadata columns.

Column `document` holds a row's text; `document_file_path` names it (else the
row is named `<file>/row <n>`); up to 50 other columns are its metadata. A
column's type is found from all its values (number, boolean, ISO 8601 date,
else text), so that later filters compare numbers as numbers; an empty cell is
no value. Anything unusable is refused naming the row or column, and nothing
of the file is kept.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from genai_jobs.vectors.records import (
    DatasetRejected,
    Document,
    DocumentKind,
    MetadataColumn,
    MetadataType,
    MetadataValue,
)

DOCUMENT_COLUMN = "document"
PATH_COLUMN = "document_file_path"
MAX_METADATA_COLUMNS = 50
MAX_COLUMN_NAME_CHARS = 200
_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}


@dataclass(frozen=True, slots=True)
class CsvDataset:
    documents: list[Document]
    metadata_columns: list[MetadataColumn]


def read_csv(name: str, text: str, max_rows: int, max_cell_bytes: int,
             safe_name: Callable[[str, str], str]) -> CsvDataset:
    """The documents of CSV file `name` of `text`; `safe_name(raw, shown)` checks a row's
    path."""
    rows = _rows(name, text, max_cell_bytes)
    header, body = rows[0], rows[1:]
    metadata_names = _metadata_names(name, header)
    if not body:
        raise DatasetRejected(name, "the CSV has a header but no rows", "empty_file")
    if len(body) > max_rows:
        raise DatasetRejected(name, f"{len(body):,} rows is over the limit of {max_rows:,}",
                              "too_many_files")
    at = {column: header.index(column) for column in header}
    types = {column: _column_type([row[at[column]] for row in body])
             for column in metadata_names}
    documents = [_document(name, number, row, at, types, safe_name)
                 for number, row in enumerate(body, 2)]
    return CsvDataset(documents, [MetadataColumn(column, types[column])
                                  for column in metadata_names])


def _rows(name: str, text: str, max_cell_bytes: int) -> list[list[str]]:
    # The csv module's own cap on a field (128 KiB) is a process-wide setting: raise it
    # to ours, which is then checked per cell below with the row's number.
    csv.field_size_limit(max(csv.field_size_limit(), max_cell_bytes + 1))
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise DatasetRejected(name, f"not a readable CSV: {exc}", "invalid_csv") from exc
    if not rows:
        raise DatasetRejected(name, "the CSV is empty", "empty_file")
    width = len(rows[0])
    for number, row in enumerate(rows, 1):
        if len(row) != width:
            raise DatasetRejected(name, f"row {number} has {len(row)} fields, the header "
                                        f"{width}", "invalid_csv")
        if any(len(cell) > max_cell_bytes for cell in row):
            raise DatasetRejected(name, f"row {number} has a field over the limit of "
                                        f"{max_cell_bytes:,} characters", "file_too_large")
    return rows


def _metadata_names(name: str, header: list[str]) -> list[str]:
    if DOCUMENT_COLUMN not in header:
        raise DatasetRejected(name, f"a CSV dataset needs a column {DOCUMENT_COLUMN!r} with "
                                    f"each document's text (and may have {PATH_COLUMN!r})",
                              "missing_column")
    seen: set[str] = set()
    for column in header:
        if not column.strip() or len(column) > MAX_COLUMN_NAME_CHARS:
            raise DatasetRejected(name, f"column names must have 1 to "
                                        f"{MAX_COLUMN_NAME_CHARS} characters", "invalid_csv")
        if column in seen:
            raise DatasetRejected(name, f"two columns are named {column!r}", "invalid_csv")
        seen.add(column)
    metadata = [column for column in header if column not in (DOCUMENT_COLUMN, PATH_COLUMN)]
    if len(metadata) > MAX_METADATA_COLUMNS:
        raise DatasetRejected(name, f"{len(metadata)} metadata columns is over the limit of "
                                    f"{MAX_METADATA_COLUMNS}", "too_many_columns")
    return metadata


def _document(name: str, number: int, row: Sequence[str], at: dict[str, int],
              types: dict[str, MetadataType],
              safe_name: Callable[[str, str], str]) -> Document:
    text = row[at[DOCUMENT_COLUMN]]
    if not text.strip():
        raise DatasetRejected(f"{name} row {number}", "the document is empty", "empty_file")
    raw_path = row[at[PATH_COLUMN]] if PATH_COLUMN in at else ""
    path = (safe_name(raw_path, f"{name} row {number}") if raw_path
            else f"{name}/row {number}")
    metadata = {column: _value(row[at[column]], kind) for column, kind in types.items()
                if row[at[column]] != ""}
    return Document(path, DocumentKind.TEXT, text.encode(), metadata)


def _column_type(values: list[str]) -> MetadataType:
    present = [value.strip() for value in values if value != ""]
    if not present:
        return MetadataType.TEXT
    for kind, test in ((MetadataType.BOOLEAN, _is_boolean), (MetadataType.NUMBER, _is_number),
                       (MetadataType.DATE, _is_date)):
        if all(test(value) for value in present):
            return kind
    return MetadataType.TEXT


def _value(raw: str, kind: MetadataType) -> MetadataValue:
    value = raw.strip()
    if kind is MetadataType.BOOLEAN:
        return value.lower() in _TRUE
    if kind is MetadataType.NUMBER:
        number = float(value)
        return int(value) if _is_int(value) else number
    if kind is MetadataType.DATE:
        return _parse_date(value).isoformat()
    return raw


def _is_boolean(value: str) -> bool:
    return value.lower() in _TRUE | _FALSE


def _is_number(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return number == number and abs(number) != float("inf")  # no NaN, no infinity


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _is_date(value: str) -> bool:
    try:
        _parse_date(value)
    except ValueError:
        return False
    return True


def _parse_date(value: str) -> date | datetime:
    if len(value) == len("2024-01-31"):
        return date.fromisoformat(value)
    return datetime.fromisoformat(value)
