"""What the server answers, as typed, immutable values.

The server speaks camelCase JSON; these models expose snake_case attributes and
read the camelCase keys. Keys the server adds later are ignored, so an older
client keeps working against a newer server.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class JobState(StrEnum):
    """The six states of the DataRobot status API."""

    INITIALIZED = "INITIALIZED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        """True once the job can never change again."""
        return self not in (JobState.INITIALIZED, JobState.RUNNING)


class _ServerModel(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
    )


class StatusInfo(_ServerModel):
    """A job's status: the seven fields of the seed's `StatusResponse`."""

    code: int
    created: datetime
    # The seed marks these three optional, so an answer without them is still valid.
    description: str = ""
    message: str = ""
    status: JobState
    status_id: UUID
    status_type: str = ""


class JobInfo(StatusInfo):
    """A whole job: its status plus what it runs, how far it got and when."""

    job_type: str
    payload: dict[str, Any]
    result: Any = None
    result_location: str | None = None
    progress: float | None = None
    progress_message: str = ""
    attempts: int = 0
    max_attempts: int | None = None
    priority: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    updated_at: datetime | None = None
    tenant: str | None = None


class JobList(_ServerModel):
    """One page of jobs; `next` and `previous` are absolute URLs or None."""

    count: int
    next: str | None = None
    previous: str | None = None
    data: list[JobInfo]
    total_count: int | None = None


class JobTypeInfo(_ServerModel):
    """A job type the server can run, with the JSON schema of its payload."""

    name: str
    description: str = ""
    payload_schema: dict[str, Any] = {}
    attempt_timeout_seconds: float | None = None
    # False when the server lacks what the job type needs (an extra), said in the reason.
    available: bool = True
    unavailable_reason: str | None = None
