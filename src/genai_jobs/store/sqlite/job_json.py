"""SQLite's SQL for a page of job documents (see store/job_json.py).

Times are stored as epoch seconds (a double); they are written as Python's
`datetime.fromtimestamp` reads them, microseconds rounded half to even, so a
listed job shows the very instants the job route shows.
"""

from __future__ import annotations

from genai_jobs.store.job_json import FAILED_STATES, JOB_FIELDS, Field, Kind


def page_statement(where: str) -> str:
    """(total, count, JSON array as bytes) for one page, newest first.

    Parameters: `where`'s, `where`'s again, limit, offset. The array is built by
    `sqlite3_step`, which runs without the interpreter lock.
    """
    # The subquery's LIMIT keeps it from being flattened: rows reach the
    # aggregate in its order.
    return (f"SELECT (SELECT COUNT(*) FROM jobs{where}), COUNT(*),"
            f" CAST(json_group_array({_DOCUMENT}) AS BLOB)"
            f" FROM (SELECT * FROM jobs{where}"
            " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?)")


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


# Built once: only the filter differs between listings.
_DOCUMENT = ("json_object("
             + ", ".join(f"'{field.name}', {_value(field)}" for field in JOB_FIELDS) + ")")
