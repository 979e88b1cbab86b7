"""The scale-out PostgreSQL store."""

from genai_jobs.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
