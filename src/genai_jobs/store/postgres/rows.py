"""Conversions between PostgreSQL rows (psycopg dict rows) and domain records."""

from __future__ import annotations

from typing import Any

from genai_jobs.domain import Job, JobState, JobStatus, TokenRecord

Row = dict[str, Any]

# Statements name their columns instead of `*`: psycopg prepares a statement on
# its fifth use, and a prepared `SELECT *` fails ("cached plan must not change
# result type") once a migration adds a column to the table.
JOB_COLUMNS = ("id, tenant, job_type, payload, description, status, message, result, "
               "result_location, progress, progress_message, attempts, max_attempts, "
               "priority, created_at, updated_at, started_at, finished_at, expires_at,"
               " run_after, abort_reason, lease_id, lease_owner, lease_expires_at")
TOKEN_COLUMNS = "id, tenant, is_admin, created_at, last_used_at, revoked_at"
# What a status poll reads (JobStatus).
STATUS_COLUMNS = "id, job_type, description, status, message, result_location, created_at"


def qualified(columns: str, table: str) -> str:
    """`columns` as `table.column`, for statements that join or update from a CTE."""
    return ", ".join(f"{table}.{column}" for column in columns.split(", "))


def job_from_row(row: Row) -> Job:
    return Job(
        id=row["id"],
        tenant=row["tenant"],
        job_type=row["job_type"],
        payload=row["payload"],
        description=row["description"],
        status=JobState(row["status"]),
        message=row["message"],
        result=row["result"],
        result_location=row["result_location"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        priority=row["priority"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        expires_at=row["expires_at"],
        run_after=row["run_after"],
        abort_reason=row["abort_reason"],
        lease_id=row["lease_id"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
    )


def status_from_row(row: Row) -> JobStatus:
    return JobStatus(
        id=row["id"],
        job_type=row["job_type"],
        description=row["description"],
        status=JobState(row["status"]),
        message=row["message"],
        result_location=row["result_location"],
        created_at=row["created_at"],
    )


def token_from_row(row: Row, prefix: str = "") -> TokenRecord:
    return TokenRecord(
        id=row[prefix + "id"],
        tenant=row[prefix + "tenant"],
        is_admin=row[prefix + "is_admin"],
        created_at=row[prefix + "created_at"],
        last_used_at=row[prefix + "last_used_at"],
        revoked_at=row[prefix + "revoked_at"],
    )
