"""Stores: where jobs and tokens live. `open_store` picks one from a URL."""

from __future__ import annotations

from pathlib import Path

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


def create_store(url: str) -> Store:
    """A store for `url`, not yet opened."""
    if url.startswith(SQLITE_PREFIX):
        from genai_jobs.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url))
    if url.startswith(POSTGRES_PREFIXES):
        raise UnsupportedDatabaseURL(
            "the PostgreSQL store is not available in this version; use sqlite:///PATH"
        )
    raise UnsupportedDatabaseURL(
        f"unsupported database URL {url!r}: expected sqlite:///PATH or postgresql://..."
    )


__all__ = ["ChangeFeed", "Store", "UnsupportedDatabaseURL", "create_store", "sqlite_path"]
