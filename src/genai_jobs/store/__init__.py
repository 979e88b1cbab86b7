"""Stores: where jobs and tokens live. `open_store` picks one from a URL."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from genai_jobs.store.base import Store
from genai_jobs.store.changes import ChangeFeed

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


class UnsupportedDatabaseURL(ValueError):
    pass


def sqlite_path(url: str) -> Path:
    """`sqlite:///rel/path.db` -> `rel/path.db`; `sqlite:////abs.db` -> `/abs.db`."""
    path = url[len(SQLITE_PREFIX):]
    if not path:
        raise UnsupportedDatabaseURL(f"no file path in {url!r}")
    return Path(path)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def public_location(database_url: str) -> str:
    """A store's URL as `--database-url` takes it, with nothing secret in it: a SQLite
    file by its absolute path (a relative one means nothing away from this process's
    directory); a PostgreSQL database by host, port and name, without its user,
    password or options (a password may hide in the query too)."""
    if database_url.startswith(SQLITE_PREFIX):
        return f"{SQLITE_PREFIX}{sqlite_path(database_url).resolve()}"
    parts = urlsplit(database_url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def create_store(
    url: str, *, pool_size: int = 10, statement_timeout_seconds: float = 30.0
) -> Store:
    """A store for `url`, not yet opened. The pool settings apply to PostgreSQL only."""
    if url.startswith(SQLITE_PREFIX):
        from genai_jobs.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url))
    if url.startswith(POSTGRES_PREFIXES):
        from genai_jobs.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size,
                             statement_timeout_seconds=statement_timeout_seconds)
    raise UnsupportedDatabaseURL(
        f"unsupported database URL {url!r}: expected sqlite:///PATH or postgresql://..."
    )


__all__ = [
    "ChangeFeed",
    "Store",
    "UnsupportedDatabaseURL",
    "create_store",
    "public_location",
    "redact_url",
    "sqlite_path",
]
