"""Conversions between SQLite rows and domain records."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from genai_jobs.domain import Job, JobState, JobStatus, TokenRecord

# What a status poll reads (JobStatus), for statements that join it to the token.
STATUS_COLUMNS = ("j.id, j.job_type, j.description, j.status, j.message, j.result_location,"
                  " j.created_at")


def to_epoch(moment: datetime) -> float:
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def maybe_datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_epoch(seconds)


def dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def load_json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def job_from_row(row: sqlite3.Row) -> Job:
    lease_id = row["lease_id"]
    return Job(
        id=UUID(row["id"]),
        tenant=row["tenant"],
        job_type=row["job_type"],
        payload=load_json(row["payload"]),
        description=row["description"],
        status=JobState(row["status"]),
        message=row["message"],
        result=load_json(row["result"]),
        result_location=row["result_location"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        priority=row["priority"],
        created_at=from_epoch(row["created_at"]),
        updated_at=from_epoch(row["updated_at"]),
        started_at=maybe_datetime(row["started_at"]),
        finished_at=maybe_datetime(row["finished_at"]),
        expires_at=from_epoch(row["expires_at"]),
        run_after=from_epoch(row["run_after"]),
        abort_reason=row["abort_reason"],
        lease_id=None if lease_id is None else UUID(lease_id),
        lease_owner=row["lease_owner"],
        lease_expires_at=maybe_datetime(row["lease_expires_at"]),
    )


def status_from_row(row: sqlite3.Row) -> JobStatus:
    return JobStatus(
        id=UUID(row["id"]),
        job_type=row["job_type"],
        description=row["description"],
        status=JobState(row["status"]),
        message=row["message"],
        result_location=row["result_location"],
        created_at=from_epoch(row["created_at"]),
    )


def token_from_row(row: sqlite3.Row, prefix: str = "") -> TokenRecord:
    return TokenRecord(
        id=UUID(row[prefix + "id"]),
        tenant=row[prefix + "tenant"],
        is_admin=bool(row[prefix + "is_admin"]),
        created_at=from_epoch(row[prefix + "created_at"]),
        last_used_at=maybe_datetime(row[prefix + "last_used_at"]),
        revoked_at=maybe_datetime(row[prefix + "revoked_at"]),
    )
