"""PostgreSQL's SQL for a page of job documents (see store/job_json.py)."""

from __future__ import annotations

from psycopg import sql

from genai_jobs.store.job_json import FAILED_STATES, JOB_FIELDS, Field, Kind

_ORDER = "ORDER BY created_at DESC, id DESC"


def _value(field: Field) -> str:
    column = field.column
    match field.kind:
        case Kind.TEXT | Kind.INTEGER | Kind.DOCUMENT:
            return column
        case Kind.ERROR_CODE:
            states = ", ".join(f"'{state}'" for state in FAILED_STATES)
            return f"CASE WHEN {column} IN ({states}) THEN 1 ELSE 0 END"
        case Kind.FRACTION:
            # float8 is written shortest-exact, as Python does, except that 0.0
            # and 1.0 lose their `.0`.
            return (f"CASE WHEN {column} IN (0, 1) THEN to_json({column}::numeric(2, 1))"
                    f" ELSE to_json({column}) END")
        case Kind.TIME:
            utc = f"({column} AT TIME ZONE 'UTC')"
            return (f"CASE WHEN {column} IS NULL THEN NULL"
                    f" ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
                    f" || CASE WHEN mod(extract(microseconds FROM {utc}), 1000000) = 0 THEN ''"
                    f" ELSE to_char({utc}, '.US') END || 'Z' END")


def page_versions_statement(where: sql.Composable) -> sql.Composed:
    """A page as its rows' version keys (see store/rendered.py): one row
    (total, keys, NULL, NULL), the listing's total and the page's keys newest
    first, comma-separated (NULL for an empty page). Parameters: `where`'s,
    limit, offset, `where`'s again."""
    return _PAGE_VERSIONS.format(where=where)


def page_documents_statement(where: sql.Composable) -> sql.Composed:
    """The row of `page_versions_statement`, then a row (NULL, NULL, key, document)
    for each row of the page asked for: all of them, or those whose ids are in the
    array. Parameters: `where`'s, limit, offset, `where`'s again, whether all, the
    ids (text). No `%` in here but the placeholders: psycopg reads the rest as its
    own. `json` (not `jsonb`) keeps payloads and results as they were stored, keys
    in their order."""
    return _PAGE_DOCUMENTS.format(where=where)


# Built once: only the filter differs between listings. The page is its rows' ids and
# version keys alone (whole rows, payloads and results included, cost the versions-only
# reading ~40 % more); the documents asked for are written from their rows in `jobs`.
# The keys come as one text, not a row each: 1,000 rows made into Python objects cost
# the event loop ~1 ms.
_PAGE = (
    "WITH page AS MATERIALIZED (SELECT id AS page_id, created_at AS page_created,"
    " id::text || ' ' || xmin::text || ' '"
    " || (extract(epoch FROM updated_at) * 1000000)::bigint AS key"
    f" FROM jobs {{where}} {_ORDER} LIMIT %s OFFSET %s)"
    " SELECT (SELECT count(*) FROM jobs {where}) AS total,"
    " (SELECT string_agg(key, ',' ORDER BY page_created DESC, page_id DESC) FROM page)"
    " AS keys, NULL::text AS key, NULL::text AS item")
_PAGE_VERSIONS = sql.SQL(_PAGE)
_PAGE_DOCUMENTS = sql.SQL(
    _PAGE + " UNION ALL SELECT NULL, NULL, page.key, json_build_object("
    + ", ".join(f"'{field.name}', {_value(field)}" for field in JOB_FIELDS)
    + ")::text FROM page JOIN jobs ON jobs.id = page.page_id"
    " WHERE %s OR page.page_id = ANY(%s::uuid[])")
