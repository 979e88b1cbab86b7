"""Where datasets, chunks and vectors live: beside the jobs, in the job store's database."""

from __future__ import annotations

import weakref

from genai_jobs.store import Store
from genai_jobs.vectors.store.base import VectorStore

_stores: weakref.WeakKeyDictionary[Store, VectorStore] = weakref.WeakKeyDictionary()


def vector_store_for(store: Store) -> VectorStore:
    """The vector store on `store`'s database (one per job store, made on first use)."""
    found = _stores.get(store)
    if found is None:
        found = _make(store)
        _stores[store] = found
    return found


def _make(store: Store) -> VectorStore:
    from genai_jobs.store.postgres import PostgresStore
    from genai_jobs.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from genai_jobs.vectors.store.sqlite import SQLiteVectorStore

        return SQLiteVectorStore(store.database)
    if isinstance(store, PostgresStore):
        from genai_jobs.vectors.store.postgres import PostgresVectorStore

        return PostgresVectorStore(store.pool)
    raise TypeError(f"datasets and vector databases need a SQLite or PostgreSQL store, "
                    f"not {type(store).__name__}")


__all__ = ["VectorStore", "vector_store_for"]
