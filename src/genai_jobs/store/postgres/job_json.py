"""PostgreSQL's SQL for a page of job documents (see store/job_json.py)."""

from __future__ import annotations

from psycopg import sql

from genai_jobs.store.job_json import FAILED_STATES, JOB_FIELDS, Field, Kind

_ORDER = "ORDER BY created_at DESC, id DESC"


def page_statement(where: sql.Composable) -> sql.Composed:
    """(total, count, JSON array as text) for one page, newest first.

    No `%` in here but the placeholders: psycopg reads the rest as its own.

    Parameters: `where`'s, `where`'s again, limit, offset. `json` (not `jsonb`)
    keeps payloads and results as they were stored, keys in their order.
    """
    return _PAGE.format(where=where)


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


# Built once: only the filter differs between listings.
_PAGE = sql.SQL(
    "SELECT (SELECT count(*) FROM jobs {where}) AS total, count(*) AS n,"
    " coalesce(json_agg(json_build_object("
    + ", ".join(f"'{field.name}', {_value(field)}" for field in JOB_FIELDS)
    + f") {_ORDER}), '[]')::text AS data"
    f" FROM (SELECT * FROM jobs {{where}} {_ORDER} LIMIT %s OFFSET %s) AS page")
