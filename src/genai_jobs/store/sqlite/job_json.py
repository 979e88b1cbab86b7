"""SQLite's SQL for a page of job documents (see store/job_json.py).

Times are stored as epoch seconds (a double); they are written as Python's
`datetime.fromtimestamp` reads them, microseconds rounded half to even, so a
listed job shows the very instants the job route shows.
"""

from __future__ import annotations

from genai_jobs.store.job_json import FAILED_STATES, JOB_FIELDS, Field, Kind


def page_versions_statement(where: str) -> str:
    """A page as its rows' version keys (see store/rendered.py): one row (total,
    keys, NULL, NULL), the listing's total and the page's keys (id and
    change_seq) newest first, comma-separated (NULL for an empty page).
    Parameters: `where`'s, limit, offset, `where`'s again."""
    return _PAGE.format(where=where)


def page_documents_statement(where: str) -> str:
    """The row of `page_versions_statement`, then a row (NULL, NULL, key, document)
    for each row of the page asked for: all of them, or those whose ids are in the
    JSON array. Parameters: `where`'s, limit, offset, `where`'s again, whether all,
    the ids (a JSON array of text). The documents are written by `sqlite3_step`,
    which runs without the interpreter lock."""
    return _PAGE.format(where=where) + _DOCUMENTS


def _value(field: Field) -> str:
    column = field.column
    match field.kind:
        case Kind.TEXT | Kind.INTEGER:
            return column
        case Kind.ERROR_CODE:
            states = ", ".join(f"'{state}'" for state in FAILED_STATES)
            return f"CASE WHEN {column} IN ({states}) THEN 1 ELSE 0 END"
        case Kind.DOCUMENT:
            return f"json({column})"
        case Kind.FRACTION:
            # Progress is kept to six decimals (handlers/context.py): 15 digits
            # write it as Python does, `!` keeps the `.0` of 0.0 and 1.0.
            return (f"CASE WHEN {column} IS NULL THEN NULL"
                    f" ELSE json(printf('%!.15g', {column})) END")
        case Kind.TIME:
            return _iso_time(column)


def _iso_time(column: str) -> str:
    micros_exact = f"(({column} - floor({column})) * 1000000.0)"
    below = f"floor({micros_exact})"
    rest = f"({micros_exact} - {below})"
    micros = (f"CAST(CASE WHEN {rest} > 0.5 OR ({rest} = 0.5 AND CAST({below} AS INTEGER) % 2 = 1)"
              f" THEN {below} + 1 ELSE {below} END AS INTEGER)")
    seconds = f"(CAST(floor({column}) AS INTEGER) + {micros} / 1000000)"
    fraction = f"({micros} % 1000000)"
    return (f"CASE WHEN {column} IS NULL THEN NULL"
            f" ELSE strftime('%Y-%m-%dT%H:%M:%S', {seconds}, 'unixepoch')"
            f" || CASE WHEN {fraction} = 0 THEN '' ELSE printf('.%06d', {fraction}) END"
            " || 'Z' END")


# Built once: only the filter differs between listings. The page is its rows' ids and
# keys alone; the documents asked for are written from their rows in `jobs`. Rows reach
# group_concat in the materialized page's order (as json_group_array's did before).
_DOCUMENT = ("json_object("
             + ", ".join(f"'{field.name}', {_value(field)}" for field in JOB_FIELDS) + ")")
_PAGE = ("WITH page AS MATERIALIZED (SELECT id AS page_id, id || ' ' || change_seq AS key"
         " FROM jobs{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?)"
         " SELECT (SELECT COUNT(*) FROM jobs{where}),"
         " (SELECT group_concat(key, ',') FROM page), NULL, NULL")
_DOCUMENTS = (" UNION ALL SELECT NULL, NULL, page.key, " + _DOCUMENT
              + " FROM page JOIN jobs ON jobs.id = page.page_id"
              " WHERE ? OR page.page_id IN (SELECT value FROM json_each(?))")
