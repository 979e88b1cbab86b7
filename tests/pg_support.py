"""A PostgreSQL database of the test session's own, or a clear skip.

PostgreSQL is at GENAI_JOBS_TEST_DATABASE_URL, else 127.0.0.1:5432 as user
postgres. Where it cannot be reached, PostgreSQL tests skip with the reason;
with GENAI_JOBS_REQUIRE_POSTGRES=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

# A postgresql:// URL (the form the service takes) to a database we may create others from.
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get("GENAI_JOBS_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


def require_postgres() -> None:
    """Skip (or, where PostgreSQL is required, fail) unless it answers."""
    import pytest  # only here: race processes import this module outside pytest

    try:
        with psycopg.connect(admin_url(), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"PostgreSQL is not reachable at {_where(admin_url())}: {exc}".splitlines()[0]
        if os.environ.get("GENAI_JOBS_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (GENAI_JOBS_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)


def create_database() -> str:
    """A new, empty database; returns its URL."""
    name = f"genai_jobs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_dbname(admin_url(), name)


def drop_database(url: str) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(str(name))))


@contextlib.contextmanager
def scratch_store(kind: str) -> Iterator[str | None]:
    """The database URL of a new PostgreSQL database for "postgres" (dropped after the
    block), or None for "sqlite" (the server then makes its own file)."""
    if kind != "postgres":
        yield None
        return
    require_postgres()
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, tokens")


def _with_dbname(url: str, name: str) -> str:
    head, _, tail = url.partition("://")
    location, _, rest = tail.partition("/")
    query = rest.partition("?")[2]
    return f"{head}://{location}/{name}" + (f"?{query}" if query else "")


def _where(url: str) -> str:
    info = conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
