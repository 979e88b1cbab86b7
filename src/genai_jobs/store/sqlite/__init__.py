"""The embedded SQLite store."""

from genai_jobs.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
